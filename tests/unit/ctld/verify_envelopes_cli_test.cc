// `plexd-ctld verify-envelopes`: the conformance CLI contract (one output
// line per input line: `ok` or `reject: <reason>`).
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "ctld_test_util.h"
#include "plexd-ctld/events/verify_envelopes_cli.h"

using namespace plexd::ctld;
using namespace plexd::ctld::test;

namespace {

struct CliRun {
  int status = -1;
  std::vector<std::string> lines;
};

CliRun runCli(std::vector<std::string> args, const std::string& input) {
  std::FILE* in = std::tmpfile();
  std::FILE* out = std::tmpfile();
  REQUIRE(in != nullptr);
  REQUIRE(out != nullptr);
  std::fwrite(input.data(), 1, input.size(), in);
  std::rewind(in);
  args.insert(args.begin(), "plexd-ctld");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  CliRun run;
  run.status = verifyEnvelopesMain(static_cast<int>(args.size()), argv.data(), in, out);
  std::rewind(out);
  std::string text;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, out)) > 0) text.append(buf, n);
  std::fclose(in);
  std::fclose(out);
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    run.lines.push_back(text.substr(start, nl - start));
    start = nl == std::string::npos ? text.size() : nl + 1;
  }
  return run;
}

const Seed kSeed = seedOf(0);
const std::vector<std::string> kArgs = {"verify-envelopes", "--key", "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
                                        "--key-id", "k-1", "--now", "2026-05-27T10:00:00Z"};

}  // namespace

namespace {

struct Vectors {
  std::string key, kid, now;
  std::vector<std::string> data;
  std::vector<bool> valid;
};

Vectors loadVectors() {
  std::ifstream in(PLEXD_SOURCE_DIR "/tests/data/vectors/envelopes.jsonl");
  REQUIRE(in);
  Vectors v;
  std::string line;
  while (std::getline(in, line)) {
    rapidjson::Document d;
    d.Parse(line.c_str(), line.size());
    REQUIRE_FALSE(d.HasParseError());
    // All vectors share one key and clock, so one run covers them.
    if (v.key.empty()) {
      v.key = d["public_key"].GetString();
      v.kid = d["key_id"].GetString();
      v.now = d["now"].GetString();
    }
    REQUIRE(v.key == d["public_key"].GetString());
    REQUIRE(v.now == d["now"].GetString());
    v.data.emplace_back(d["data"].GetString(), d["data"].GetStringLength());
    v.valid.push_back(d["valid"].GetBool());
  }
  REQUIRE(v.data.size() == 48);
  return v;
}

void checkVerdicts(const std::vector<std::string>& lines, const std::vector<bool>& expected) {
  REQUIRE(lines.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("verdict " << i + 1 << ": " << lines[i]);
    if (expected[i]) CHECK(lines[i] == "ok");
    else CHECK_THAT(lines[i], Catch::StartsWith("reject: "));
  }
}

}  // namespace

TEST_CASE("line mode reproduces the verdict of every single-line jsonl vector") {
  const Vectors v = loadVectors();
  std::string input;
  std::vector<bool> expected;
  for (size_t i = 0; i < v.data.size(); ++i) {
    if (v.data[i].find_first_of("\r\n") != std::string::npos) continue;  // see the --sse case
    input += v.data[i] + "\n";
    expected.push_back(v.valid[i]);
  }
  CHECK(expected.size() == 47);
  auto run = runCli({"verify-envelopes", "--key", v.key, "--key-id", v.kid, "--now", v.now}, input);
  CHECK(run.status == 0);
  checkVerdicts(run.lines, expected);
}

TEST_CASE("SSE input mode (--sse) reproduces the verdict of all 48 vectors sent as an event stream") {
  // A body with raw line breaks travels as several data: lines (s1-43).
  const Vectors v = loadVectors();
  std::string stream = ":keep-alive\n\n";
  for (size_t i = 0; i < v.data.size(); ++i) {
    stream += "id: " + std::to_string(i + 1) + "\nevent: x\n";
    size_t start = 0;
    for (;;) {
      const size_t nl = v.data[i].find('\n', start);
      stream += "data: " + v.data[i].substr(start, nl - start) + "\r\n";
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
    stream += "\n";
  }
  auto run = runCli({"verify-envelopes", "--sse", "--key", v.key, "--key-id", v.kid, "--now", v.now}, stream);
  CHECK(run.status == 0);
  checkVerdicts(run.lines, v.valid);

  auto broken = runCli({"--sse", "--key", v.key, "--key-id", v.kid}, "data: " + std::string(2 << 20, 'x') + "\n");
  CHECK(broken.status == 1);
  REQUIRE(broken.lines.size() == 1);
  CHECK_THAT(broken.lines[0], Catch::StartsWith("reject: SSE line longer than"));
}

TEST_CASE("the CLI accepts raw bodies and SSE data lines, one verdict per line") {
  const std::string ev = makeEvent(kSeed, "k-1", "node_state_updated", "2026-05-27T10:00:00Z");
  const std::string stale = makeEvent(kSeed, "k-1", "node_state_updated", "2026-05-27T09:00:00Z");
  auto run = runCli(kArgs, ev + "\ndata: " + ev + "\r\ndata:" + ev + "\n\n" + stale + "\n{\n" + ev);
  CHECK(run.status == 0);
  REQUIRE(run.lines.size() == 7);
  CHECK(run.lines[0] == "ok");
  CHECK(run.lines[1] == "ok");
  CHECK(run.lines[2] == "ok");
  CHECK(run.lines[3] == "reject: empty line");
  CHECK(run.lines[4] == "reject: stale event: issued_at is 3600 s before now (limit 300 s)");
  CHECK_THAT(run.lines[5], Catch::StartsWith("reject: envelope is not a valid JSON object"));
  CHECK(run.lines[6] == "ok");  // last line without a newline
}

TEST_CASE("the CLI bounds line length") {
  const std::string ev = makeEvent(kSeed, "k-1", "node_state_updated", "2026-05-27T10:00:00Z");
  std::string huge(kVerifyEnvelopesMaxLine + 10, 'x');
  auto run = runCli(kArgs, huge + "\n" + ev + "\n");
  REQUIRE(run.lines.size() == 2);
  CHECK(run.lines[0] == "reject: line longer than 1048576 bytes");
  CHECK(run.lines[1] == "ok");
}

TEST_CASE("the CLI follows a signing key rotation") {
  const Seed next = seedOf(50);
  const std::string rotation =
      makeEvent(kSeed, "k-1", "signing_key_rotated", "2026-05-27T10:00:00Z",
                "{\"key_id\":\"k-2\",\"public_key\":\"" + publicKeyB64(next) + "\"}");
  const std::string byNew = makeEvent(next, "k-2", "node_state_updated", "2026-05-27T10:00:00Z");
  const std::string byOld = makeEvent(kSeed, "k-1", "node_state_updated", "2026-05-27T10:00:00Z");
  auto run = runCli(kArgs, byNew + "\n" + rotation + "\n" + byNew + "\n" + byOld + "\n");
  REQUIRE(run.lines.size() == 4);
  CHECK(run.lines[0] == "reject: unknown signing key id \"k-2\"");
  CHECK(run.lines[1] == "ok");
  CHECK(run.lines[2] == "ok");
  CHECK(run.lines[3] == "reject: unknown signing key id \"k-1\"");
}

TEST_CASE("CLI usage errors exit 2 without reading input") {
  CHECK(runCli({"verify-envelopes"}, "x\n").status == 2);
  CHECK(runCli({"verify-envelopes", "--key", "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="}, "").status == 2);
  CHECK(runCli({"--key", "short", "--key-id", "k"}, "").status == 2);
  CHECK(runCli({"--key=A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=", "--key-id=k", "--now=yesterday"}, "").status ==
        2);
  CHECK(runCli({"--key=A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=", "--key-id=k", "--bogus"}, "").status == 2);
  auto ok = runCli({"--key=A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=", "--key-id=k"}, "");
  CHECK(ok.status == 0);
  CHECK(ok.lines.empty());
}
