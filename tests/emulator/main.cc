// plexd-cp-emulator: the control-plane emulator (serve) and its admin CLI.
#include <curl/curl.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "common/atomic_file.h"
#include "common/event.h"
#include "common/log.h"
#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"

using namespace plexd;

namespace {

constexpr const char* kUsage = R"(usage:
  plexd-cp-emulator serve [--listen HOST:PORT] [--admin-port PORT] [--tls-dir DIR | --no-tls]
                          [--ready-file FILE] [--project-id UUID] [--domain-cidr CIDR]
                          [--keepalive SECONDS] [--ring-size N]
      Serves the node API (HTTPS with a test CA generated into --tls-dir) and
      the admin API on http://127.0.0.1:PORT. The ready file receives
      {"url","admin_url","ca_file","project_id"} once both listen.
  plexd-cp-emulator admin [--admin-url URL | --ready-file FILE] COMMAND ...
      status | config JSON
      token create [node|bridge] [TTL_SECONDS] | token revoke TOKEN | token expire TOKEN
      resource add HANDLE node|bridge
      node list | node create [JSON] | node show ID | node delete ID | node set ID JSON
      snapshot ID | policy ID JSON|null | bridge ID JSON|null | state ID JSON|null
      secret ID NAME VALUE | execution ID JSON | session ID JSON
      signing-key rotate [GRACE_SECONDS]
      emit JSON          (node_id, type, payload, sign, key_id, issued_at_offset_seconds,
                          method_a_only, raw_data, cut_mid_frame)
      events | streams drop [abrupt]
      fault set SURFACE STATUS [CODE] [RETRY_AFTER] [COUNT] | fault clear [SURFACE]
      offline | online
      received ID [SURFACE]
      call METHOD PATH [JSON]
  ADMIN URL also from $PLEXD_EMU_ADMIN.
)";

int serve(const std::vector<std::string>& args) {
  emu::Options o;
  o.tlsDir = "";
  bool noTls = false;
  std::string readyFile;
  for (size_t i = 0; i < args.size(); ++i) {
    auto next = [&]() -> std::string {
      if (i + 1 >= args.size()) throw std::runtime_error(args[i] + " needs a value");
      return args[++i];
    };
    const std::string& a = args[i];
    if (a == "--listen") {
      std::string v = next();
      auto colon = v.rfind(':');
      if (colon == std::string::npos) throw std::runtime_error("--listen wants HOST:PORT");
      o.listenHost = v.substr(0, colon);
      o.port = static_cast<uint16_t>(std::stoi(v.substr(colon + 1)));
    } else if (a == "--admin-port") {
      o.adminPort = static_cast<uint16_t>(std::stoi(next()));
    } else if (a == "--tls-dir") {
      o.tlsDir = next();
    } else if (a == "--no-tls") {
      noTls = true;
    } else if (a == "--ready-file") {
      readyFile = next();
    } else if (a == "--project-id") {
      o.projectId = next();
    } else if (a == "--domain-cidr") {
      o.domainCidr = next();
    } else if (a == "--keepalive") {
      o.keepAlive = std::chrono::seconds(std::stoi(next()));
    } else if (a == "--ring-size") {
      o.ringSize = std::stoul(next());
    } else {
      throw std::runtime_error("unknown option " + a);
    }
  }
  if (!noTls && o.tlsDir.empty()) throw std::runtime_error("give --tls-dir DIR (or --no-tls)");
  if (noTls) o.tlsDir.clear();
  if (!o.tlsDir.empty()) o.tlsDir = std::filesystem::absolute(o.tlsDir).lexically_normal().string();
  if (o.keepAlive.count() < 1) throw std::runtime_error("--keepalive must be >= 1");
  auto loop = event::newLoop();
  if (!loop) throw std::runtime_error(loop.error().text());
  auto sigs = event::addSignals(loop->get(), {SIGTERM, SIGINT},
                                [&](const signalfd_siginfo&) { sd_event_exit(loop->get(), 0); });
  if (!sigs) throw std::runtime_error(sigs.error().text());
  ::signal(SIGPIPE, SIG_IGN);
  auto e = emu::Emulator::start(loop->get(), o);
  if (!e) throw std::runtime_error(e.error().text());
  std::string ready = "{\"url\":" + emu::goQuote((*e)->baseUrl()) + ",\"admin_url\":" + emu::goQuote((*e)->adminUrl()) +
                      ",\"ca_file\":" + emu::goQuote((*e)->caFile()) + ",\"project_id\":\"" + o.projectId + "\"}\n";
  if (!readyFile.empty()) {
    if (auto s = writeFileAtomic(readyFile, ready, 0644); !s) throw std::runtime_error(s.error().text());
  }
  log::info("control-plane emulator ready", {{"url", (*e)->baseUrl()}, {"admin_url", (*e)->adminUrl()}});
  int rc = sd_event_loop(loop->get());
  e->reset();
  return rc < 0 ? 1 : 0;
}

size_t collect(char* d, size_t s, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(d, s * n);
  return s * n;
}

int call(const std::string& base, const std::string& method, const std::string& path, const std::string& body) {
  CURL* c = curl_easy_init();
  std::string out;
  std::string url = base + path;
  curl_slist* h = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) {
    std::cerr << "cannot reach the emulator admin API at " << base << ": " << curl_easy_strerror(rc) << "\n";
    return 2;
  }
  std::cout << out << (out.empty() || out.back() != '\n' ? "\n" : "");
  return status >= 400 ? 1 : 0;
}

std::string adminBase(std::vector<std::string>& args) {
  std::string url;
  if (const char* env = std::getenv("PLEXD_EMU_ADMIN")) url = env;
  while (!args.empty() && (args[0] == "--admin-url" || args[0] == "--ready-file") && args.size() >= 2) {
    if (args[0] == "--admin-url") {
      url = args[1];
    } else {
      auto text = readFileBounded(args[1], 64 * 1024);
      if (!text) throw std::runtime_error(text.error().text());
      auto doc = emu::parseObject(*text);
      if (!doc || !(*doc).HasMember("admin_url")) throw std::runtime_error("ready file has no admin_url");
      url = (*doc)["admin_url"].GetString();
    }
    args.erase(args.begin(), args.begin() + 2);
  }
  if (url.empty()) throw std::runtime_error("no admin URL: pass --admin-url, --ready-file or set PLEXD_EMU_ADMIN");
  return url;
}

int adminCmd(std::vector<std::string> args) {
  std::string base = adminBase(args);
  auto arg = [&](size_t i, const std::string& def = "") { return i < args.size() ? args[i] : def; };
  auto need = [&](size_t n) {
    if (args.size() < n) throw std::runtime_error("missing arguments; see --help");
  };
  need(1);
  const std::string cmd = args[0];
  const std::string sub = arg(1);
  if (cmd == "status") return call(base, "GET", "/admin/status", "");
  if (cmd == "config") return need(2), call(base, "PUT", "/admin/config", args[1]);
  if (cmd == "token" && sub == "create") {
    std::string body = "{\"kind\":\"" + arg(2, "node") + "\",\"ttl_seconds\":" + arg(3, "3600") + "}";
    return call(base, "POST", "/admin/tokens", body);
  }
  if (cmd == "token" && (sub == "revoke" || sub == "expire")) {
    return need(3), call(base, "POST", "/admin/tokens/" + sub, "{\"token\":" + emu::goQuote(args[2]) + "}");
  }
  if (cmd == "resource" && sub == "add") {
    need(4);
    return call(base, "POST", "/admin/resources", "{\"handle\":" + emu::goQuote(args[2]) + ",\"kind\":\"" + args[3] + "\"}");
  }
  if (cmd == "node" && sub == "list") return call(base, "GET", "/admin/nodes", "");
  if (cmd == "node" && sub == "create") return call(base, "POST", "/admin/nodes", arg(2, "{}"));
  if (cmd == "node" && sub == "show") return need(3), call(base, "GET", "/admin/nodes/" + args[2], "");
  if (cmd == "node" && sub == "delete") return need(3), call(base, "DELETE", "/admin/nodes/" + args[2], "");
  if (cmd == "node" && sub == "set") return need(4), call(base, "PATCH", "/admin/nodes/" + args[2], args[3]);
  if (cmd == "snapshot") return need(2), call(base, "GET", "/admin/nodes/" + args[1] + "/snapshot", "");
  if (cmd == "policy" || cmd == "bridge" || cmd == "state") {
    return need(3), call(base, "PUT", "/admin/nodes/" + args[1] + "/" + cmd, args[2]);
  }
  if (cmd == "secret") {
    need(4);
    return call(base, "POST", "/admin/nodes/" + args[1] + "/secrets",
                "{\"name\":" + emu::goQuote(args[2]) + ",\"value\":" + emu::goQuote(args[3]) + "}");
  }
  if (cmd == "execution") return need(3), call(base, "POST", "/admin/nodes/" + args[1] + "/executions", args[2]);
  if (cmd == "session") return need(3), call(base, "POST", "/admin/nodes/" + args[1] + "/sessions", args[2]);
  if (cmd == "signing-key" && sub == "rotate") {
    return call(base, "POST", "/admin/signing-key/rotate", "{\"grace_seconds\":" + arg(2, "300") + "}");
  }
  if (cmd == "emit") return need(2), call(base, "POST", "/admin/events", args[1]);
  if (cmd == "events") return call(base, "GET", "/admin/events", "");
  if (cmd == "streams" && sub == "drop") {
    return call(base, "POST", "/admin/streams/drop", std::string("{\"abrupt\":") + (arg(2) == "abrupt" ? "true" : "false") + "}");
  }
  if (cmd == "fault" && sub == "set") {
    need(4);
    std::string body = "{\"status\":" + args[3];
    if (!arg(4).empty()) body += ",\"code\":" + emu::goQuote(args[4]);
    if (!arg(5).empty()) body += ",\"retry_after\":" + args[5];
    if (!arg(6).empty()) body += ",\"count\":" + args[6];
    return call(base, "PUT", "/admin/faults/" + args[2], body + "}");
  }
  if (cmd == "fault" && sub == "clear") {
    return call(base, "DELETE", args.size() > 2 ? "/admin/faults/" + args[2] : "/admin/faults", "");
  }
  if (cmd == "offline" || cmd == "online") return call(base, "POST", "/admin/" + cmd, "");
  if (cmd == "received") {
    need(2);
    return call(base, "GET", "/admin/nodes/" + args[1] + "/received" + (args.size() > 2 ? "?surface=" + args[2] : ""), "");
  }
  if (cmd == "call") return need(3), call(base, args[1], args[2], arg(3));
  throw std::runtime_error("unknown admin command '" + cmd + "'; see --help");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  log::setup("plexd-cp-emulator", log::Level::info);
  try {
    std::string mode = args[0];
    args.erase(args.begin());
    if (mode == "serve") return serve(args);
    if (mode == "admin") {
      curl_global_init(CURL_GLOBAL_DEFAULT);
      return adminCmd(args);
    }
    std::cerr << kUsage;
    return 2;
  } catch (const std::exception& ex) {
    std::cerr << "plexd-cp-emulator: " << ex.what() << "\n";
    return 2;
  }
}
