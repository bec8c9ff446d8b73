// Real plexd-ctld against the control-plane emulator, with this test as
// plexd-apid on the ctld-apid channel: report changes (PROTOCOL.md §14.2)
// go upstream, wait while the control plane is down (also across a ctld
// restart) and drain with the right value when it is back.
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "common/event.h"
#include "ipc/channel.h"
#include "ipc/channel_spec.h"
#include "ipc/ctld_apid.h"
#include "ipc/socket.h"
#include "tests/ctld/ctld_fixture.h"

using namespace plexd;
using namespace plexd::ctld::testing;

namespace {

// Whom ctld expects as the listener of the apid and netd channel sockets
// (supervisor.users): this test when it runs unprivileged; as root any
// non-root user will do, since ctld accepts a root listener anyway.
std::string channelUser() {
  if (::geteuid() == 0) return "nobody";
  const passwd* pw = ::getpwuid(::geteuid());
  REQUIRE(pw != nullptr);
  return pw->pw_name;
}

// The apid end: listens on <ipc_dir>/ctld-apid.sock like plexd-apid.socket,
// accepts ctld's connection and keeps the node state ctld pushes.
class ApidEnd {
 public:
  explicit ApidEnd(const std::string& ipcDir) {
    auto l = ipc::Listener::bind(ipcDir + "/ctld-apid.sock", 0666);
    REQUIRE(l.ok());
    listener_ = std::make_unique<ipc::Listener>(std::move(*l));
  }

  // Waits for ctld to connect and say hello.
  void accept(const CtldProcess& ctld) {
    channel_.reset();
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (true) {
      int fd = ::accept4(listener_->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        auto ch = ipc::Channel::open(loop_.get(), UniqueFd(fd), ipc::kCtldApid, ipc::Peer::apid);
        REQUIRE(ch.ok());
        channel_ = std::move(*ch);
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        INFO(ctld.log());
        FAIL("plexd-ctld did not connect to the apid channel socket");
      }
      pump(10ms);
    }
    channel_->handle<ipc::NodeStateHeader>([this](ipc::NodeStateHeader&& h, UniqueFd, ipc::Reply reply) {
      if (h.metadata + h.data == 0) digest_ = h.digest;
      staged_ = h.digest;
      (void)reply.send(ipc::NodeStateAck{digest_});
    });
    channel_->handleSet<ipc::NodeStateEntry>([this](std::vector<ipc::NodeStateEntry>&& items, ipc::Reply reply) {
      digest_ = staged_;
      (void)reply.send(ipc::TxAck{static_cast<uint32_t>(items.size())});
    });
    until([&] { return channel_->ready(); }, "the channel handshake", ctld);
  }

  template <class Req>
  typename Req::Response call(const Req& req, const CtldProcess& ctld) {
    std::optional<Result<typename Req::Response>> out;
    channel_->call(req, 10s, [&](Result<typename Req::Response> r) { out = std::move(r); });
    until([&] { return out.has_value(); }, std::string(Req::kName), ctld);
    INFO(ctld.log());
    REQUIRE(out->ok());
    return std::move(**out);
  }

  ipc::AgentStatusReply status(const CtldProcess& ctld) { return call(ipc::AgentStatusRequest{}, ctld); }

  // Runs the loop until pred() holds; fails with the ctld log after 30 s.
  void until(const std::function<bool()>& pred, const std::string& what, const CtldProcess& ctld,
             std::chrono::milliseconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) {
        INFO(ctld.log());
        FAIL("timed out waiting for " << what);
      }
      pump(10ms);
    }
  }

 private:
  void pump(std::chrono::milliseconds d) {
    REQUIRE(sd_event_run(loop_.get(), static_cast<uint64_t>(d.count()) * 1000) >= 0);
  }

  event::Loop loop_ = std::move(event::newLoop().value());
  std::unique_ptr<ipc::Listener> listener_;
  std::unique_ptr<ipc::Channel> channel_;
  std::string digest_, staged_;
};

ipc::ReportChange put(const std::string& key, const std::string& value) {
  ipc::ReportChange c;
  c.key = key;
  c.value = value;
  return c;
}

// The value of the last report PUT the emulator received for key ("" none).
std::string lastReported(EmulatorProcess& emu, const std::string& node, const std::string& key) {
  auto doc = emu::testing::parse(received(emu, node, "reports"));
  std::string last;
  for (const auto& r : doc.GetArray()) {
    const std::string path = r["path"].GetString();
    if (path.size() < key.size() || path.compare(path.size() - key.size(), key.size(), key) != 0) continue;
    const std::string method = r["method"].GetString();
    if (method == "DELETE") {
      last = "<deleted>";
      continue;
    }
    auto body = emu::testing::parse(r["body"].GetString());
    last = body["value"].GetString();
  }
  return last;
}

}  // namespace

TEST_CASE("a report put through the apid channel reaches the control plane, and waits for it while it is down") {
  EmulatorProcess emu;
  CtldConfig cfg;
  cfg.tokenInFile = emu.newToken();
  cfg.reconcileInterval = "1s";
  CtldProcess ctld(emu, cfg);
  const std::string ipcDir = ctld.dir() + "/ipc";
  // The channel sockets live in a root-owned (or our own) 0755 directory.
  REQUIRE(std::filesystem::create_directory(ipcDir));
  REQUIRE(::chmod(ipcDir.c_str(), 0755) == 0);
  {
    // Enrol first, standalone (no channel sockets yet: ctld registers with a
    // throwaway key instead of waiting for netd).
    std::ofstream(ctld.dir() + "/config.yaml", std::ios::app)
        << "ipc:\n  socket_dir: " << ipcDir << "\n"
        << "supervisor:\n  users:\n    apid: " << channelUser() << "\n    netd: " << channelUser() << "\n"
        << "node_api:\n  debounce_period: 200ms\n";
  }
  ctld.start();
  ctld.waitLog({"registered with the control plane"}, 30s);
  const std::string node = ctld.nodeId();
  REQUIRE_FALSE(node.empty());
  REQUIRE(ctld.stop() == 0);

  ApidEnd apid(ipcDir);
  ctld.start();
  apid.accept(ctld);

  // 1. A change is acked once ctld stored it, and shows up upstream.
  auto ack = apid.call(put("app.status", R"({"ok":true,"n":1})"), ctld);
  CHECK(ack.pending == 1);
  apid.until([&] { return lastReported(emu, node, "app.status") == R"({"ok":true,"n":1})"; },
             "the report at the control plane", ctld);
  apid.until([&] { return apid.status(ctld).reports_pending == 0; }, "reports_pending 0", ctld);
  CHECK(apid.status(ctld).reports_synced == 1);

  // 2. Control plane down: the change stays pending (and on disk) ...
  REQUIRE(emu.admin("POST", "/admin/offline").status == 200);
  ack = apid.call(put("app.status", R"({"ok":false,"n":2})"), ctld);
  CHECK(ack.pending == 1);
  apid.until([&] { return apid.status(ctld).reports_state == "retrying"; }, "reports_state retrying", ctld);
  CHECK(apid.status(ctld).reports_pending == 1);
  CHECK(ctld.readState("reports-pending.json").find("app.status") != std::string::npos);

  // ... and drains with the right value when it is back (no 30 s wait: the
  // next answered pull says the control plane is reachable again).
  REQUIRE(emu.admin("POST", "/admin/online").status == 200);
  apid.until([&] { return lastReported(emu, node, "app.status") == R"({"ok":false,"n":2})"; },
             "the second value at the control plane", ctld, 20s);
  apid.until([&] { return apid.status(ctld).reports_pending == 0; }, "reports_pending 0 again", ctld);

  // 3. Down again, and ctld restarts meanwhile: the pending deletion and a new
  //    key survive the restart and drain once the control plane is back.
  REQUIRE(emu.admin("POST", "/admin/offline").status == 200);
  ipc::ReportChange del;
  del.key = "app.status";
  del.deleted = true;
  CHECK(apid.call(del, ctld).pending == 1);
  CHECK(apid.call(put("app.version", R"("1.2.3")"), ctld).pending == 2);
  REQUIRE(ctld.stop() == 0);
  const std::string file = ctld.readState("reports-pending.json");
  CHECK(file.find("app.version") != std::string::npos);
  CHECK(file.find("\"deleted\":true") != std::string::npos);
  REQUIRE(emu.admin("POST", "/admin/online").status == 200);
  ctld.start();
  apid.accept(ctld);
  apid.until([&] { return lastReported(emu, node, "app.version") == R"("1.2.3")"; }, "app.version upstream", ctld);
  apid.until([&] { return lastReported(emu, node, "app.status") == "<deleted>"; }, "app.status deleted", ctld);
  apid.until([&] { return apid.status(ctld).reports_pending == 0; }, "everything synced", ctld);
  CHECK(apid.status(ctld).reports_state == "idle");
  CHECK(ctld.stop() == 0);
}
