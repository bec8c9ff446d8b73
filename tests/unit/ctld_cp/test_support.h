// Small fixtures shared by the ctld cp unit tests.
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "plexd-ctld/cp/registration.h"
#include "tests/unit/temp_dir.h"

namespace plexd::ctld::testing {

// An injectable environment for registration input lookups.
struct Env {
  std::map<std::string, std::string> vars;
  EnvLookup lookup() const {
    return [this](const char* n) -> std::optional<std::string> {
      auto it = vars.find(n);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  }
};

// A fresh directory under /tmp, removed with everything in it.
using TempDir = plexd::test::TempDir;

}  // namespace plexd::ctld::testing
