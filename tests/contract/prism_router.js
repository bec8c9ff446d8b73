#!/usr/bin/env node
// The front door of the prism contract test (tests/contract/, docs/emulator.md
// "Contract test"). plexd-ctld talks to this router over plain HTTP; it
//
//  - sends every request through `prism proxy` (which validates the request
//    and the emulator's response against plexsphere-v1.yaml) and records the
//    exchange with prism's `sl-violations` header, so each violation is tied
//    to the request that caused it;
//  - sends the SSE event stream (GET /v1/nodes/{id}/events) straight to the
//    emulator, because prism reads an upstream body to its end before it
//    validates and answers, so an endless stream never reaches the client.
//    Each such request is also *mirrored* through prism with the same method,
//    path and headers: that exchange ends when the emulator closes its
//    streams (admin `streams drop`) and is then recorded like any other, so
//    the stream's request and response (status, headers) are validated too.
//
// Usage: node prism_router.js --prism http://127.0.0.1:P --emulator https://127.0.0.1:E
//            --ca CA.pem --record FILE --ready-file FILE
// The record file gets one JSON object per line:
//   {"kind":"exchange"|"mirror"|"direct","method","path","status",
//    "violations":[...]|null,"prism_error":"..."|null,"error":"..."|null}
// The ready file receives {"url":"http://127.0.0.1:PORT"} once listening.
// No dependencies beyond node itself.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) {
    process.stderr.write(`prism_router: missing ${name}\n`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const prism = new URL(arg('--prism'));
const emulator = new URL(arg('--emulator'));
const ca = fs.readFileSync(arg('--ca'));
const recordPath = arg('--record');
const readyFile = arg('--ready-file');

const record = fd => entry => fs.writeSync(fd, JSON.stringify(entry) + '\n');
const write = record(fs.openSync(recordPath, 'a'));

const streamPath = /^\/v1\/nodes\/[^/?]+\/events(\?|$)/;
// Hop-by-hop headers are not forwarded (RFC 9110 §7.6.1); node sets framing itself.
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer',
  'upgrade', 'host', 'content-length']);

function forwardHeaders(raw) {
  const out = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!hopByHop.has(k.toLowerCase())) out[k] = v;
  }
  return out;
}

function parseViolations(res) {
  const v = res.headers['sl-violations'];
  if (v === undefined) return null;
  try {
    return JSON.parse(v);
  } catch (e) {
    return [{ unparsed: v }];  // "Too many violations! ..." (truncated by prism)
  }
}

// A prism-made error (it could not forward, or it answered itself) is not an
// answer of the emulator: the test must not pass on one.
function prismError(res, body) {
  if (!/problem\+json/.test(res.headers['content-type'] || '')) return null;
  try {
    const p = JSON.parse(body.toString('utf8'));
    if (typeof p.type === 'string' && p.type.startsWith('https://stoplight.io/prism/errors')) {
      return `${p.type}: ${p.title || ''} ${p.detail || ''}`.trim();
    }
  } catch (e) {
    // not JSON: the emulator's business, validated by prism
  }
  return null;
}

// Sends one request through prism; calls done(res, bodyBuffer) or fail(err).
function viaPrism(method, path, headers, body, done, fail) {
  const req = http.request({
    host: prism.hostname, port: prism.port, method, path,
    headers: forwardHeaders(headers), agent: false,
  }, res => {
    const chunks = [];
    res.on('data', c => chunks.push(c));
    res.on('end', () => done(res, Buffer.concat(chunks)));
    res.on('error', fail);
  });
  req.on('error', fail);
  req.end(body);
}

function handleViaPrism(creq, cres, body) {
  viaPrism(creq.method, creq.url, creq.headers, body, (res, buf) => {
    write({
      kind: 'exchange', method: creq.method, path: creq.url, status: res.statusCode,
      violations: parseViolations(res), prism_error: prismError(res, buf), error: null,
    });
    const headers = forwardHeaders(res.headers);
    headers['content-length'] = buf.length;
    cres.writeHead(res.statusCode, headers);
    cres.end(buf);
  }, err => {
    write({ kind: 'exchange', method: creq.method, path: creq.url, status: 0, violations: null, prism_error: null,
      error: String(err) });
    cres.destroy();
  });
}

function handleStream(creq, cres) {
  // The mirror through prism, recorded when the emulator closes the stream.
  viaPrism(creq.method, creq.url, creq.headers, undefined, (res, buf) => {
    write({
      kind: 'mirror', method: creq.method, path: creq.url, status: res.statusCode,
      violations: parseViolations(res), prism_error: prismError(res, buf), error: null,
    });
  }, err => {
    write({ kind: 'mirror', method: creq.method, path: creq.url, status: 0, violations: null, prism_error: null,
      error: String(err) });
  });
  // The real stream, byte for byte, straight from the emulator.
  const ureq = https.request({
    host: emulator.hostname, port: emulator.port, method: creq.method, path: creq.url,
    headers: forwardHeaders(creq.headers), ca, agent: false,
  }, ures => {
    write({ kind: 'direct', method: creq.method, path: creq.url, status: ures.statusCode, violations: null,
      prism_error: null, error: null });
    cres.writeHead(ures.statusCode, forwardHeaders(ures.headers));
    cres.flushHeaders();
    ures.on('data', c => cres.write(c));
    ures.on('end', () => cres.end());
    // A cut upstream is a cut downstream (no clean end the client could trust).
    ures.on('aborted', () => cres.destroy());
    ures.on('error', () => cres.destroy());
  });
  ureq.on('error', () => cres.destroy());
  cres.on('close', () => {
    if (!cres.writableFinished) ureq.destroy();  // the client went away
  });
  ureq.end();
}

const server = http.createServer((creq, cres) => {
  if (creq.method === 'GET' && streamPath.test(creq.url)) {
    creq.resume();
    handleStream(creq, cres);
    return;
  }
  const chunks = [];
  creq.on('data', c => chunks.push(c));
  creq.on('end', () => handleViaPrism(creq, cres, chunks.length ? Buffer.concat(chunks) : undefined));
});
// ctld keeps connections alive between requests; do not close them under it.
server.keepAliveTimeout = 300 * 1000;
server.headersTimeout = 301 * 1000;
server.requestTimeout = 0;

server.listen(0, '127.0.0.1', () => {
  const url = `http://127.0.0.1:${server.address().port}`;
  const tmp = `${readyFile}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ url }) + '\n');
  fs.renameSync(tmp, readyFile);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
