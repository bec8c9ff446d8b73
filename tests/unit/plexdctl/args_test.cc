// plexdctl's command line: every command parses, options land where they
// belong, and every malformed form is a usage error (exit 2) that says why.
#include "plexdctl/args.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace plexd::ctl;

namespace {

ParseOutcome parse(std::vector<std::string> args, const char* env = nullptr) { return parseArgs(args, env); }

Invocation ok(std::vector<std::string> args, const char* env = nullptr) {
  ParseOutcome o = parse(std::move(args), env);
  INFO(o.text);
  REQUIRE(o.kind == ParseOutcome::Kind::run);
  return o.invocation;
}

// A usage error; returns its text (for stderr).
std::string usageError(std::vector<std::string> args) {
  ParseOutcome o = parse(std::move(args));
  REQUIRE(o.kind == ParseOutcome::Kind::usageError);
  CHECK(o.text.rfind("plexdctl: ", 0) == 0);
  return o.text;
}

}  // namespace

TEST_CASE("plexdctl args: each command parses") {
  CHECK(ok({"status"}).command == Command::status);
  CHECK(ok({"peers"}).command == Command::peers);
  CHECK(ok({"policies"}).command == Command::policies);
  CHECK(ok({"state"}).command == Command::state);
  CHECK(ok({"doctor"}).command == Command::doctor);
  CHECK(ok({"version"}).command == Command::version);
  CHECK(ok({"--version"}).command == Command::version);
  CHECK(ok({"suite"}).command == Command::suite);
  CHECK(ok({"config"}).command == Command::config);
  CHECK(ok({"config"}).configFile.empty());
  CHECK(ok({"config", "--config", "/srv/plexd.yaml"}).configFile == "/srv/plexd.yaml");
  CHECK(ok({"--config=/srv/plexd.yaml", "config"}).configFile == "/srv/plexd.yaml");

  auto sg = ok({"state", "get", "region"});
  CHECK(sg.command == Command::stateGet);
  CHECK(sg.key == "region");

  auto rg = ok({"report", "get", "health"});
  CHECK(rg.command == Command::reportGet);
  CHECK(rg.key == "health");

  auto rp = ok({"report", "put", "health", "{\"ok\":true}"});
  CHECK(rp.command == Command::reportPut);
  CHECK(rp.key == "health");
  CHECK(rp.payload == "{\"ok\":true}");
  CHECK(rp.contentType == "application/json");
  CHECK_FALSE(rp.ifMatch.has_value());

  auto rd = ok({"report", "delete", "health"});
  CHECK(rd.command == Command::reportDelete);
  CHECK(rd.key == "health");

  auto sec = ok({"secret", "get", "db"});
  CHECK(sec.command == Command::secretGet);
  CHECK(sec.key == "db");
  CHECK_FALSE(sec.version.has_value());
}

TEST_CASE("plexdctl args: defaults, environment and global options anywhere") {
  auto d = ok({"status"});
  CHECK(d.socket == "/run/plexd/api.sock");
  CHECK_FALSE(d.json);
  CHECK(d.timeout == std::chrono::seconds(10));

  CHECK(ok({"status"}, "/tmp/env.sock").socket == "/tmp/env.sock");
  CHECK(ok({"status"}, "").socket == "/run/plexd/api.sock");
  CHECK(ok({"--socket", "/tmp/a.sock", "status"}, "/tmp/env.sock").socket == "/tmp/a.sock");

  auto after = ok({"peers", "--json", "--socket=/tmp/b.sock", "--timeout", "2.5"});
  CHECK(after.json);
  CHECK(after.socket == "/tmp/b.sock");
  CHECK(after.timeout == std::chrono::milliseconds(2500));
  CHECK(ok({"--timeout=1", "status"}).timeout == std::chrono::seconds(1));
}

TEST_CASE("plexdctl args: command options") {
  auto rp = ok({"report", "put", "--content-type", "text/plain", "--if-match", "3", "health", "\"up\""});
  CHECK(rp.contentType == "text/plain");
  REQUIRE(rp.ifMatch.has_value());
  CHECK(*rp.ifMatch == 3);
  CHECK(rp.payload == "\"up\"");

  CHECK(ok({"report", "put", "health", "-"}).payload == "-");
  // A negative JSON number is an operand, and so is anything after "--".
  CHECK(ok({"report", "put", "health", "-5"}).payload == "-5");
  CHECK(ok({"report", "put", "health", "--", "--json"}).payload == "--json");

  auto rd = ok({"report", "delete", "health", "--if-match=7"});
  REQUIRE(rd.ifMatch.has_value());
  CHECK(*rd.ifMatch == 7);

  auto sec = ok({"secret", "get", "db", "--version", "2"});
  REQUIRE(sec.version.has_value());
  CHECK(*sec.version == 2);

  auto su = ok({"suite", "--json", "--control-socket", "/tmp/sup.sock"});
  CHECK(su.json);
  CHECK(su.controlSocket == "/tmp/sup.sock");
  CHECK(ok({"suite"}).controlSocket == "/run/plexd/supervisor.sock");
}

TEST_CASE("plexdctl args: help goes to stdout, per command") {
  auto all = parse({"--help"});
  CHECK(all.kind == ParseOutcome::Kind::help);
  CHECK(all.text.find("report put KEY") != std::string::npos);
  CHECK(all.text.find("exit codes") != std::string::npos);

  auto put = parse({"report", "put", "--help"});
  CHECK(put.kind == ParseOutcome::Kind::help);
  CHECK(put.text.find("--if-match N") != std::string::npos);
  CHECK(put.text.find("secret get") == std::string::npos);

  auto group = parse({"report", "-h"});
  CHECK(group.kind == ParseOutcome::Kind::help);
  CHECK(group.text.find("report delete KEY") != std::string::npos);

  CHECK(parse({"doctor", "--help"}).kind == ParseOutcome::Kind::help);
  CHECK(parse({"-h"}).kind == ParseOutcome::Kind::help);
}

TEST_CASE("plexdctl args: malformed command lines are usage errors") {
  CHECK(usageError({}).find("no command") != std::string::npos);
  CHECK(usageError({"frobnicate"}).find("unknown command 'frobnicate'") != std::string::npos);
  CHECK(usageError({"status", "--frob"}).find("unknown option --frob") != std::string::npos);
  CHECK(usageError({"status", "--config", "/x"}).find("--config does not apply here") != std::string::npos);
  CHECK(usageError({"config", "--config="}).find("--config needs a path") != std::string::npos);
  CHECK(usageError({"-x", "status"}).find("unknown option -x") != std::string::npos);
  CHECK(usageError({"status", "extra"}).find("unexpected argument 'extra'") != std::string::npos);
  CHECK(usageError({"state", "get"}).find("needs KEY") != std::string::npos);
  CHECK(usageError({"state", "get", "a", "b"}).find("unexpected argument 'b'") != std::string::npos);
  CHECK(usageError({"report"}).find("needs a subcommand") != std::string::npos);
  CHECK(usageError({"report", "list"}).find("unknown command 'report list'") != std::string::npos);
  CHECK(usageError({"report", "put", "k"}).find("needs KEY and PAYLOAD") != std::string::npos);
  CHECK(usageError({"report", "get"}).find("needs KEY") != std::string::npos);
  CHECK(usageError({"secret"}).find("needs a subcommand") != std::string::npos);
  CHECK(usageError({"secret", "put", "x"}).find("unknown command") != std::string::npos);

  // Values: missing, malformed, out of range.
  CHECK(usageError({"status", "--socket"}).find("--socket needs a value") != std::string::npos);
  CHECK(usageError({"status", "--socket="}).find("--socket needs a path") != std::string::npos);
  CHECK(usageError({"status", "--socket", std::string(200, 'a')}).find("too long") != std::string::npos);
  CHECK(usageError({"status", "--timeout", "0"}).find("--timeout") != std::string::npos);
  CHECK(usageError({"status", "--timeout", "-1"}).find("--timeout") != std::string::npos);
  CHECK(usageError({"status", "--timeout", "ten"}).find("--timeout") != std::string::npos);
  CHECK(usageError({"status", "--timeout", "99999"}).find("--timeout") != std::string::npos);
  CHECK(usageError({"status", "--json=yes"}).find("takes no value") != std::string::npos);
  CHECK(usageError({"report", "delete", "k", "--if-match", "x"}).find("--if-match") != std::string::npos);
  CHECK(usageError({"report", "delete", "k", "--if-match", "-1"}).find("--if-match") != std::string::npos);
  CHECK(usageError({"secret", "get", "db", "--version", "0"}).find("--version") != std::string::npos);
  CHECK(usageError({"secret", "get", "db", "--version", "99999999999999999999"}).find("--version") !=
        std::string::npos);
  CHECK(usageError({"report", "put", "k", "--content-type=", "1"}).find("--content-type") != std::string::npos);

  // Options of one command are refused on another.
  CHECK(usageError({"status", "--if-match", "1"}).find("does not apply") != std::string::npos);
  CHECK(usageError({"report", "get", "k", "--if-match", "1"}).find("does not apply") != std::string::npos);
  CHECK(usageError({"peers", "--control-socket", "/x"}).find("does not apply") != std::string::npos);
  // The supervisor's view moved from `status` to `suite`: say so.
  CHECK(usageError({"status", "--control-socket", "/x"}).find("plexdctl suite") != std::string::npos);
  CHECK(usageError({"report", "put", "k", "1", "--version", "2"}).find("does not apply") != std::string::npos);
  CHECK(usageError({"--version", "secret", "get", "db"}).find("--version") != std::string::npos);

  // Keys: empty, too long, control characters.
  CHECK(usageError({"report", "get", ""}).find("invalid key") != std::string::npos);
  CHECK(usageError({"report", "get", std::string(256, 'k')}).find("invalid key") != std::string::npos);
  CHECK(usageError({"state", "get", "a\x1b[2Jb"}).find("invalid key") != std::string::npos);

  // The usage follows the message.
  CHECK(usageError({"frobnicate"}).find("usage: plexdctl") != std::string::npos);
}
