// `plexd-ctld verify-envelopes --key B64 --key-id ID [--now RFC3339] [--sse]`
//
// A conformance tool: reads one SSE data body per input line (the JSON
// envelope, optionally still prefixed with "data:" / "data: "), verifies it
// as the agent would (PROTOCOL.md §7.3) and prints one output line per input
// line: `ok` or `reject: <reason>`.
//
// An envelope whose JSON contains raw line breaks (legal JSON whitespace;
// vector s1-43) cannot be one input line: over SSE it arrives as several
// `data:` lines joined with LF. With --sse the input is a text/event-stream
// instead (parsed by SseParser, §6.3) and one verdict is printed per
// dispatched event; a framing error prints `reject: <error>` and exits 1. A verified signing_key_rotated event
// rotates the trusted keys for the following lines, as in the agent; if its
// payload cannot be applied the line prints `reject: <why>` instead of ok.
//
// --key accepts raw or SPKI base64 (or PEM). --now defaults to the system
// clock. Input lines longer than 1 MiB are rejected without being buffered.
// Exit status: 0 after all input was processed, 1 on an SSE framing error
// (--sse), 2 on a usage error (message on stderr).
#pragma once

#include <cstdio>

namespace plexd::ctld {

inline constexpr size_t kVerifyEnvelopesMaxLine = 1024 * 1024;

// argv may start with the program name followed by "verify-envelopes", or
// with just the program name: argv[0] is always skipped, and a following
// "verify-envelopes" is skipped too.
int verifyEnvelopesMain(int argc, char** argv, std::FILE* in, std::FILE* out);

}  // namespace plexd::ctld
