#include "plexd-ctld/events/verify_envelopes_cli.h"

#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "common/clock.h"
#include "plexd-ctld/events/envelope_verifier.h"
#include "plexd-ctld/events/sse_parser.h"

namespace plexd::ctld {
namespace {

constexpr std::string_view kUsage =
    "usage: plexd-ctld verify-envelopes --key B64 --key-id ID [--now RFC3339] [--sse] < envelopes\n";

int usage(std::string_view problem) {
  std::fputs(fmt::format("plexd-ctld verify-envelopes: {}\n{}", problem, kUsage).c_str(), stderr);
  return 2;
}

struct Options {
  std::string key;
  std::string keyId;
  std::optional<std::string> now;
  bool sse = false;
};

std::optional<Options> parseArgs(int argc, char** argv, std::string* problem) {
  Options o;
  bool haveKey = false, haveKeyId = false;
  int i = 1;
  if (i < argc && std::string_view(argv[i]) == "verify-envelopes") ++i;
  for (; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--sse") {
      o.sse = true;
      continue;
    }
    std::string_view name = arg, value;
    bool inlineValue = false;
    if (const size_t eq = arg.find('='); arg.substr(0, 2) == "--" && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inlineValue = true;
    }
    if (name != "--key" && name != "--key-id" && name != "--now") {
      *problem = fmt::format("unknown argument {}", name);
      return std::nullopt;
    }
    if (!inlineValue) {
      if (i + 1 >= argc) {
        *problem = fmt::format("{} needs a value", name);
        return std::nullopt;
      }
      value = argv[++i];
    }
    if (name == "--key") {
      o.key = value;
      haveKey = true;
    } else if (name == "--key-id") {
      o.keyId = value;
      haveKeyId = true;
    } else {
      o.now = std::string(value);
    }
  }
  if (!haveKey || !haveKeyId) {
    *problem = "--key and --key-id are required";
    return std::nullopt;
  }
  return o;
}

// Reads one line (without its LF) into line. Returns false at EOF with no
// data. Sets *tooLong and discards the rest when the line exceeds the cap.
bool readLine(std::FILE* in, std::string& line, bool* tooLong) {
  line.clear();
  *tooLong = false;
  int c = 0;
  bool any = false;
  while ((c = std::getc(in)) != EOF) {
    any = true;
    if (c == '\n') return true;
    if (line.size() >= kVerifyEnvelopesMaxLine) {
      *tooLong = true;
      continue;
    }
    line += static_cast<char>(c);
  }
  return any;
}

std::string verifyData(EnvelopeVerifier& verifier, std::string_view data, Instant now) {
  VerifyResult r = verifier.verify(data, now);
  if (!r.ok()) return "reject: " + r.reason;
  if (r.envelope->envelope().type == kSigningKeyRotatedType) {
    if (auto st = verifier.applyRotation(*r.envelope); !st) return "reject: " + st.error().text();
  }
  return "ok";
}

std::string verifyLine(EnvelopeVerifier& verifier, std::string_view line, Instant now) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.substr(0, 5) == "data:") {
    line.remove_prefix(5);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  }
  if (line.empty()) return "reject: empty line";
  return verifyData(verifier, line, now);
}

void emit(std::FILE* out, const std::string& verdict) {
  std::fputs(verdict.c_str(), out);
  std::fputc('\n', out);
  std::fflush(out);
}

Instant nowFor(const std::optional<Instant>& fixed) {
  return fixed ? *fixed : Instant::fromWallTime(systemClock().wallNow());
}

int runSse(EnvelopeVerifier& verifier, const std::optional<Instant>& fixedNow, std::FILE* in, std::FILE* out) {
  SseParser parser(SseHandlers{
      [&](const SseEvent& ev) { emit(out, verifyData(verifier, ev.data, nowFor(fixedNow))); }, {}, {}});
  std::string buf(64 * 1024, '\0');
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), in)) > 0) {
    if (auto st = parser.feed(std::string_view(buf.data(), n)); !st) {
      emit(out, "reject: " + st.error().text());
      return 1;
    }
  }
  return 0;
}

}  // namespace

int verifyEnvelopesMain(int argc, char** argv, std::FILE* in, std::FILE* out) {
  std::string problem;
  auto opts = parseArgs(argc, argv, &problem);
  if (!opts) return usage(problem);
  auto key = decodeSigningPublicKey(opts->key);
  if (!key) return usage(fmt::format("--key: {}", key.error().text()));
  if (opts->keyId.empty()) return usage("--key-id must not be empty");
  std::optional<Instant> fixedNow;
  if (opts->now) {
    auto t = parseGoTime(*opts->now);
    if (!t) return usage(fmt::format("--now: {}", t.error().text()));
    fixedNow = t->instant();
  }

  EnvelopeVerifier verifier(SigningKeySet(SigningKey{opts->keyId, *key}));
  if (opts->sse) return runSse(verifier, fixedNow, in, out);
  std::string line;
  bool tooLong = false;
  while (readLine(in, line, &tooLong)) {
    emit(out, tooLong ? fmt::format("reject: line longer than {} bytes", kVerifyEnvelopesMaxLine)
                      : verifyLine(verifier, line, nowFor(fixedNow)));
  }
  return 0;
}

}  // namespace plexd::ctld
