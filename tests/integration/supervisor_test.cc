// plexd-supervisor as a user sees it: the real binary, real daemons, root.
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>

#include "process_util.h"
#include "supervisor_suite.h"

using namespace std::chrono_literals;
using plexd::test::ChildInfo;
using plexd::test::StatusInfo;
using plexd::test::Suite;

namespace {

constexpr auto kStartTimeout = 20s;
constexpr auto kRecoverTimeout = 20s;

bool needRoot() {
  if (geteuid() == 0) return true;
  WARN("integration test needs root: not run");
  return false;
}

bool allReady(const StatusInfo& s, size_t count) {
  if (s.children.size() != count) return false;
  for (const auto& c : s.children)
    if (!c.ready || c.state != "running") return false;
  return true;
}

// Every channel of `c` is up, newer than `min_gen` (if given for that peer)
// and has answered a ping.
bool linksWork(const StatusInfo& s, const std::string& name, const std::vector<std::string>& peers,
               const std::map<std::string, uint32_t>& min_gen = {}) {
  const ChildInfo* c = s.child(name);
  if (!c) return false;
  for (const auto& p : peers) {
    const auto* l = c->link(p);
    if (!l || !l->ready || l->pings_ok == 0) return false;
    if (auto it = min_gen.find(p); it != min_gen.end() && l->generation <= it->second) return false;
  }
  return true;
}

std::string uidLine(uid_t u) {
  std::string one = std::to_string(u);
  return one + "\t" + one + "\t" + one + "\t" + one;
}

std::map<std::string, std::vector<std::string>> peersOf(bool bridge) {
  std::map<std::string, std::vector<std::string>> m = {
      {"netd", {"ctld"}}, {"ctld", {"netd", "apid"}}, {"apid", {"ctld"}}};
  if (bridge) {
    m["ctld"].push_back("relayd");
    m["relayd"] = {"ctld"};
  }
  return m;
}

}  // namespace

TEST_CASE("the supervisor is READY once every daemon is, each runs as its own user with only its capabilities") {
  if (!needRoot()) return;
  Suite suite;
  REQUIRE(suite.waitReady(kStartTimeout));
  // READY=1 was sent: at that moment every daemon must already be ready.
  auto s = suite.status();
  REQUIRE(s);
  INFO(s->raw);
  CHECK(s->ready);
  REQUIRE(allReady(*s, 3));
  CHECK(s->child("relayd") == nullptr);  // not in bridge mode
  for (const auto& c : s->children) {
    INFO(c.name);
    auto uid = plexd::test::uidOf(plexd::test::expectedUser(c.name));
    REQUIRE(uid);
    // Straight from the kernel, not from the supervisor's report.
    std::string uids = plexd::test::procStatusField(c.pid, "Uid");
    CHECK(uids == uidLine(*uid));  // real, effective, saved, fs
    CHECK(c.uid == static_cast<int64_t>(*uid));
    const std::string caps = c.name == "netd" ? "0000000000003000" : "0000000000000000";
    CHECK(plexd::test::procStatusField(c.pid, "CapEff") == caps);
    CHECK(plexd::test::procStatusField(c.pid, "CapPrm") == caps);
    CHECK(plexd::test::procStatusField(c.pid, "CapBnd") == caps);
    CHECK(plexd::test::procStatusField(c.pid, "NoNewPrivs") == "1");
  }
  suite.waitFor("every channel answers pings", kRecoverTimeout, [](const StatusInfo& st) {
    for (const auto& [name, peers] : peersOf(false))
      if (!linksWork(st, name, peers)) return false;
    return true;
  });
}

TEST_CASE("in bridge mode relayd runs too, wired to ctld") {
  if (!needRoot()) return;
  Suite suite({"--bridge"});
  REQUIRE(suite.waitReady(kStartTimeout));
  auto s = suite.waitFor("all four daemons ready with working channels", kRecoverTimeout, [](const StatusInfo& st) {
    if (!allReady(st, 4)) return false;
    for (const auto& [name, peers] : peersOf(true))
      if (!linksWork(st, name, peers)) return false;
    return true;
  });
  const ChildInfo* relayd = s.child("relayd");
  REQUIRE(relayd);
  CHECK(relayd->user == plexd::test::expectedUser("relayd"));
  CHECK(plexd::test::procStatusField(relayd->pid, "CapEff") == "0000000000000000");
#if !defined(__SANITIZE_ADDRESS__)  // the daemons of a sanitizer build skip seccomp
  CHECK(plexd::test::procStatusField(relayd->pid, "Seccomp") == "2");  // filter mode
#endif
}

TEST_CASE("kill -9 of each daemon in turn: it comes back with working channels, the others keep their pids") {
  if (!needRoot()) return;
  Suite suite({"--bridge"});
  REQUIRE(suite.waitReady(kStartTimeout));
  const auto peers = peersOf(true);
  auto s = suite.waitFor("all channels working", kRecoverTimeout, [&](const StatusInfo& st) {
    if (!allReady(st, 4)) return false;
    for (const auto& [name, ps] : peers)
      if (!linksWork(st, name, ps)) return false;
    return true;
  });
  for (const std::string victim : {"netd", "ctld", "apid", "relayd"}) {
    INFO("victim " << victim);
    std::map<std::string, pid_t> pids;
    for (const auto& c : s.children) pids[c.name] = c.pid;
    // Generations the victim's links have now: the new ones must be higher,
    // on both ends.
    std::map<std::string, uint32_t> gens;
    for (const auto& p : peers.at(victim)) gens[p] = s.child(victim)->link(p)->generation;
    const unsigned restarts = s.child(victim)->restarts;
    REQUIRE(kill(pids[victim], SIGKILL) == 0);
    s = suite.waitFor(victim + " back with new channels that answer pings", kRecoverTimeout, [&](const StatusInfo& st) {
      const ChildInfo* v = st.child(victim);
      if (!v || v->pid == pids[victim] || !v->ready || v->restarts != restarts + 1) return false;
      if (!linksWork(st, victim, peers.at(victim), gens)) return false;
      for (const auto& p : peers.at(victim))
        if (!linksWork(st, p, {victim}, {{victim, gens[p]}})) return false;
      return allReady(st, 4);
    });
    for (const auto& [name, pid] : pids) {
      if (name == victim) continue;
      INFO(name << " must not have been restarted");
      CHECK(s.child(name)->pid == pid);
      CHECK(plexd::test::processAlive(pid));
    }
    CHECK_FALSE(plexd::test::processAlive(pids[victim]));
  }
}

TEST_CASE("a daemon that exits at once is restarted with growing delays, not in a tight loop") {
  if (!needRoot()) return;
  Suite suite({"--binary", "ctld=/bin/false", "--backoff-base-ms", "100", "--backoff-cap-ms", "30000"});
  // Others come up; ctld keeps failing.
  auto first = suite.waitFor("netd and apid running while ctld fails", kStartTimeout, [](const StatusInfo& st) {
    const ChildInfo* ctld = st.child("ctld");
    return ctld && ctld->restarts >= 2 && st.child("netd")->ready && st.child("apid")->ready;
  });
  const auto start = std::chrono::steady_clock::now();
  const unsigned before = first.child("ctld")->restarts;
  // Observe a fixed window: a spinning supervisor restarts it dozens to
  // thousands of times in 5 s; backoff with doubling ceilings a handful.
  StatusInfo last = first;
  while (std::chrono::steady_clock::now() - start < 5s) {
    if (auto st = suite.status()) last = *st;
    std::this_thread::sleep_for(200ms);
  }
  const unsigned during = last.child("ctld")->restarts - before;
  INFO("restarts of ctld in 5 s: " << during << "\n" << last.raw);
  CHECK(during <= 15);
  CHECK(last.child("ctld")->restarts >= 3);  // it is retried, not given up
  CHECK(last.child("netd")->pid == first.child("netd")->pid);
  CHECK(last.child("apid")->pid == first.child("apid")->pid);
  CHECK_FALSE(last.ready);
  CHECK_FALSE(suite.readySeen());  // never READY while a daemon is not
}

TEST_CASE("SIGTERM stops the daemons in order, the supervisor exits 0 and nothing is left behind") {
  if (!needRoot()) return;
  Suite suite({"--bridge"});
  REQUIRE(suite.waitReady(kStartTimeout));
  auto s = suite.waitFor("all four ready", kRecoverTimeout, [](const StatusInfo& st) { return allReady(st, 4); });
  std::vector<pid_t> pids;
  for (const auto& c : s.children) pids.push_back(c.pid);
  CHECK(suite.terminate(45s) == 0);
  for (pid_t p : pids) {
    INFO("daemon pid " << p);
    CHECK_FALSE(plexd::test::processAlive(p));
  }
  // apid first, netd last.
  const std::string log = suite.logText();
  INFO(log);
  auto at = [&](const std::string& d) { return log.find("stopping daemon daemon=" + d); };
  REQUIRE(at("apid") != std::string::npos);
  CHECK(at("apid") < at("relayd"));
  CHECK(at("relayd") < at("ctld"));
  CHECK(at("ctld") < at("netd"));
  // Each daemon shut down cleanly on SIGTERM (no crash, no sanitizer report).
  for (const std::string d : {"apid", "relayd", "ctld", "netd"}) {
    INFO(d);
    auto line = log.find("daemon stopped daemon=" + d);
    REQUIRE(line != std::string::npos);
    CHECK(log.substr(line, log.find('\n', line) - line).find("exit=\"exited with status 0\"") != std::string::npos);
  }
  CHECK(access((suite.dir() + "/supervisor.sock").c_str(), F_OK) != 0);  // control socket removed
}

TEST_CASE("a missing daemon user is refused with a message naming it and how to create it") {
  if (!needRoot()) return;
  Suite suite({"--user", "netd=nobody", "--user", "apid=nobody", "--user", "ctld=plexd-no-such-user"},
              /*dev_fallback=*/false);
  const int code = suite.waitExit(15s);
  const std::string log = suite.logText();
  INFO(log);
  CHECK(code == 1);
  CHECK(log.find("plexd-no-such-user does not exist") != std::string::npos);
  CHECK(log.find("systemd-sysusers") != std::string::npos);
  CHECK(log.find("started daemon") == std::string::npos);  // refused before starting anything
}

TEST_CASE("with --dev-user-fallback a missing user runs as nobody, with a loud warning") {
  if (!needRoot()) return;
  Suite suite({"--user", "ctld=plexd-no-such-user", "--dev-user-fallback"});
  REQUIRE(suite.waitReady(kStartTimeout));
  auto s = suite.status();
  REQUIRE(s);
  CHECK(s->child("ctld")->user == "nobody");
  CHECK(s->child("ctld")->uid == static_cast<int64_t>(*plexd::test::uidOf("nobody")));
  const std::string log = suite.logText();
  CHECK(log.find("DEVELOPMENT FALLBACK") != std::string::npos);
  CHECK(log.find("user=plexd-no-such-user") != std::string::npos);
}

TEST_CASE("mode: bridge and the restart backoff come from the config file") {
  if (!needRoot()) return;
  Suite suite({"--binary", "apid=/bin/false"}, true,
              "mode: bridge\nsupervisor:\n  restart_backoff_min: 2s\n  restart_backoff_max: 4s\n");
  auto s = suite.waitFor("relayd running (bridge mode from the config)", kStartTimeout, [](const StatusInfo& st) {
    return st.child("relayd") && st.child("relayd")->ready && st.child("apid") && st.child("apid")->restarts >= 1;
  });
  // With a 2 s minimum delay apid cannot have been restarted more than
  // about once per 2 s since it first failed.
  const auto start = std::chrono::steady_clock::now();
  const unsigned before = s.child("apid")->restarts;
  while (std::chrono::steady_clock::now() - start < 5s) std::this_thread::sleep_for(250ms);
  auto after = suite.status();
  REQUIRE(after);
  INFO(after->raw);
  CHECK(after->child("apid")->restarts - before <= 3);
}

namespace {

std::string environOf(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/environ");
  std::string env((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::replace(env.begin(), env.end(), '\0', '\n');
  return env;
}

struct stat statOf(const std::string& path) {
  struct stat st{};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

}  // namespace

TEST_CASE("state directories belong to their daemons and the bootstrap token is handed to ctld only") {
  if (!needRoot()) return;
  const std::string token = "psb_test_aaaa_node_abcdefghijklmnopqrstu";
  Suite suite({}, true, "", token);
  auto s = suite.waitFor("all daemons ready", kStartTimeout, [](const StatusInfo& st) { return allReady(st, 3); });
  const std::string data = suite.dir() + "/data";
  // The token left /etc-like root custody and sits in ctld's own directory.
  CHECK_FALSE(std::filesystem::exists(suite.dir() + "/bootstrap-token"));
  const std::string handed = data + "/ctld/bootstrap-token";
  REQUIRE(std::filesystem::exists(handed));
  const ChildInfo* ctld = s.child("ctld");
  REQUIRE(ctld);
  CHECK(statOf(handed).st_uid == static_cast<uid_t>(ctld->uid));
  CHECK((statOf(handed).st_mode & 07777) == 0600);
  std::ifstream tf(handed);
  std::string got;
  std::getline(tf, got);
  CHECK(got == token);
  for (const auto& [name, dir] : std::map<std::string, std::string>{{"ctld", "ctld"}, {"netd", "netd"}, {"apid", "state"}}) {
    INFO(name);
    const ChildInfo* c = s.child(name);
    REQUIRE(c);
    struct stat st = statOf(data + "/" + dir);
    CHECK(S_ISDIR(st.st_mode));
    CHECK(st.st_uid == static_cast<uid_t>(c->uid));
    CHECK((st.st_mode & 07777) == 0700);
  }
  // Only ctld learns where the token is.
  CHECK(environOf(ctld->pid).find("PLEXD_BOOTSTRAP_TOKEN_FILE=" + handed) != std::string::npos);
  CHECK(environOf(s.child("netd")->pid).find("PLEXD_BOOTSTRAP_TOKEN") == std::string::npos);
  CHECK(environOf(s.child("apid")->pid).find("PLEXD_BOOTSTRAP_TOKEN") == std::string::npos);
}

TEST_CASE("the supervisor makes the node API socket for apid: group plexd, 0660, the same socket across apid restarts") {
  if (!needRoot()) return;
  Suite suite;
  auto s = suite.waitFor("all daemons ready", kStartTimeout, [](const StatusInfo& st) { return allReady(st, 3); });
  const ChildInfo* apid = s.child("apid");
  REQUIRE(apid);
  struct stat sock = statOf(suite.apiSocket());
  CHECK(S_ISSOCK(sock.st_mode));
  CHECK(sock.st_uid == static_cast<uid_t>(apid->uid));
  if (auto* g = getgrnam("plexd")) {
    CHECK(sock.st_gid == g->gr_gid);
    CHECK((sock.st_mode & 07777) == 0660);
  } else {
    CHECK((sock.st_mode & 07777) == 0666);  // no group plexd: open, with a warning in the log
  }
  CHECK(environOf(apid->pid).find("PLEXD_LISTEN_FDS=api:4") != std::string::npos);
  const std::string curl = "curl -sS --max-time 5 --unix-socket " + suite.apiSocket() + " http://localhost/v1/health";
  CHECK(plexd::test::mustRun(curl).find("ok") != std::string::npos);
  // apid crashes: the supervisor restarts it on the same socket, clients
  // never see "no such file".
  const pid_t old = apid->pid;
  REQUIRE(kill(old, SIGKILL) == 0);
  suite.waitFor("apid back", kRecoverTimeout, [&](const StatusInfo& st) {
    const ChildInfo* a = st.child("apid");
    return a && a->pid != old && a->ready;
  });
  CHECK(statOf(suite.apiSocket()).st_ino == sock.st_ino);
  CHECK(plexd::test::mustRun(curl).find("ok") != std::string::npos);
}
