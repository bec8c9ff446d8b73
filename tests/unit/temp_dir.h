// A fresh directory under the temporary directory ($TMPDIR, else /tmp) for
// one test, removed with everything in it when the object goes away.
#pragma once

#include <stdlib.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace plexd::test {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "plexd-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // A path inside it.
  std::string file(const std::string& name) const { return path + "/" + name; }

  std::string path;
};

}  // namespace plexd::test
