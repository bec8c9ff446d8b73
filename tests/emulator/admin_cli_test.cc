// The admin CLI drives a running emulator through its ready file.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <sys/wait.h>

#include "tests/emulator/emulator_fixture.h"

using namespace plexd::emu::testing;

namespace {

struct CliResult {
  int exitCode;
  std::string out;
};

CliResult cli(const std::string& args) {
  std::string cmd = std::string(PLEXD_EMULATOR_BIN) + " admin " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace

TEST_CASE("admin CLI: tokens faults offline/online and inspection") {
  EmulatorProcess emu;
  std::string rf = "--ready-file " + emu.readyFile() + " ";
  auto status = cli(rf + "status");
  REQUIRE(status.exitCode == 0);
  CHECK(parse(status.out)["online"].IsTrue());
  CHECK(std::string(parse(status.out)["ca_file"].GetString()) == emu.caFile());

  auto token = cli(rf + "token create bridge 60");
  REQUIRE(token.exitCode == 0);
  CHECK(std::string(parse(token.out)["token"].GetString()).find("_bridge_") != std::string::npos);

  auto n = emu.registerNode();
  REQUIRE(cli(rf + "fault set heartbeat 503 datastore_unavailable 9").exitCode == 0);
  auto hb = emu.api("POST", "/v1/nodes/" + n.nodeId + "/heartbeat", "{}", {bearerHeader(n)});
  CHECK(hb.status == 503);
  CHECK(hb.header("retry-after") == "9");
  REQUIRE(cli(rf + "fault clear heartbeat").exitCode == 0);
  CHECK(emu.api("POST", "/v1/nodes/" + n.nodeId + "/heartbeat", "{}", {bearerHeader(n)}).status == 400);

  REQUIRE(cli(rf + "offline").exitCode == 0);
  CHECK(emu.api("GET", "/v1/health").code == CURLE_COULDNT_CONNECT);
  REQUIRE(cli(rf + "online").exitCode == 0);
  CHECK(emu.api("GET", "/v1/health").status == 200);

  auto list = cli(rf + "node list");
  REQUIRE(list.exitCode == 0);
  CHECK(parse(list.out).Size() == 1);
  CHECK(cli(rf + "received " + n.nodeId + " heartbeat").exitCode == 0);
  CHECK(cli(rf + "node show 01900000-0000-7000-8000-000000000000").exitCode == 1);

  auto unknown = cli(rf + "frobnicate");
  CHECK(unknown.exitCode == 2);
  CHECK(unknown.out.find("unknown admin command") != std::string::npos);
  auto noUrl = cli("status");
  CHECK(noUrl.exitCode == 2);
  CHECK(noUrl.out.find("no admin URL") != std::string::npos);
}
