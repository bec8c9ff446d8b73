// `plexd-ctld verify-envelopes` as shipped: the installed binary gives the
// conformance verdict for every reference vector (PROTOCOL.md §7.5).
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <rapidjson/document.h>

namespace {

struct Run {
  int status = -1;
  std::string out;
};

Run runCli(const std::string& input, const std::string& key, const std::string& keyId, const std::string& now,
           bool sse) {
  char tmpl[] = "/tmp/plexd-verify-XXXXXX";
  int fd = ::mkstemp(tmpl);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, input.data(), input.size()) == static_cast<ssize_t>(input.size()));
  ::close(fd);
  std::string cmd = std::string(PLEXD_CTLD_BIN) + " verify-envelopes --key '" + key + "' --key-id '" + keyId +
                    "' --now '" + now + "'" + (sse ? " --sse" : "") + " < " + tmpl;
  Run r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.status = ::pclose(p);
  std::filesystem::remove(tmpl);
  return r;
}

}  // namespace

TEST_CASE("plexd-ctld verify-envelopes accepts exactly the valid reference vectors") {
  std::ifstream in(std::string(PLEXD_SOURCE_DIR) + "/tests/data/vectors/envelopes.jsonl");
  REQUIRE(in);
  size_t cases = 0;
  for (std::string line; std::getline(in, line);) {
    rapidjson::Document v;
    v.Parse(line.c_str());
    REQUIRE_FALSE(v.HasParseError());
    const std::string name = v["name"].GetString();
    const std::string data = v["data"].GetString();
    const bool valid = v["valid"].GetBool();
    // A data body with raw line breaks can only travel as an SSE stream.
    const bool sse = data.find('\n') != std::string::npos;
    std::string input;
    if (sse) {
      size_t start = 0;
      while (start <= data.size()) {
        size_t nl = data.find('\n', start);
        input += "data: " + data.substr(start, nl == std::string::npos ? std::string::npos : nl - start) + "\n";
        if (nl == std::string::npos) break;
        start = nl + 1;
      }
      input += "\n";
    } else {
      input = data + "\n";
    }
    Run r = runCli(input, v["public_key"].GetString(), v["key_id"].GetString(), v["now"].GetString(), sse);
    INFO(name << ": " << r.out);
    CHECK(WIFEXITED(r.status));
    CHECK(WEXITSTATUS(r.status) == 0);
    if (valid)
      CHECK(r.out == "ok\n");
    else
      CHECK(r.out.rfind("reject: ", 0) == 0);
    ++cases;
  }
  CHECK(cases >= 40);
}

TEST_CASE("plexd-ctld verify-envelopes without a key is a usage error") {
  Run r = runCli("{}\n", "", "k", "2026-01-01T00:00:00Z", false);
  CHECK(WEXITSTATUS(r.status) == 2);
}
