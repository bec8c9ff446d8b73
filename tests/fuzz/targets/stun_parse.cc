// Fuzz the STUN decoder (plexd-ctld/nat/stun.h): never crashes; whatever
// parseMessage accepts passes isStunPacket, stays within the limits, parses
// the same again and validates the same again; and what it says (a Binding
// result, an error code, a request's options) survives a round trip through
// our own encoder. Input: one datagram.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "plexd-ctld/nat/stun.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using namespace plexd;
using namespace plexd::ctld::nat;

void check(bool ok) {
  if (!ok) std::abort();
}

bool printable(const std::string& s) {
  for (char c : s)
    if (c < 0x20 || c > 0x7E) return false;
  return true;
}

void checkLimits(const StunMessage& m, size_t size) {
  check(size <= kMaxStunMessageBytes);
  check(m.method <= 0xFFF);
  check(m.attributes <= kMaxStunAttributes);
  check(m.attributes * 4 <= size - kStunHeaderBytes);
  check(m.unknownRequired.size() <= m.attributes);
  for (uint16_t t : m.unknownRequired) check(t != 0 && t < 0x8000);
  if (m.software) check(m.software->size() <= kMaxStunTextBytes && printable(*m.software));
  if (m.error) {
    check(m.error->code >= 300 && m.error->code <= 699);
    check(m.error->reason.size() <= kMaxStunTextBytes && printable(m.error->reason));
  }
  for (const auto* a : {&m.xorMapped, &m.mapped, &m.otherAddress, &m.responseOrigin})
    if (*a) check(((*a)->family == 4 || (*a)->family == 6) && (*a)->validate().ok() == ((*a)->port != 0));
}

// A success response: our encoding of the same result validates to it.
void roundTripSuccess(const StunMessage& m, const BindingResult& r) {
  check(m.method == kStunMethodBinding && m.cls == StunClass::success_response);
  check(m.unknownRequired.empty());
  check(checkMappedAddress(r.mapped).ok());
  if (r.otherAddress) check(checkMappedAddress(*r.otherAddress).ok());
  if (r.responseOrigin) check(checkMappedAddress(*r.responseOrigin).ok());
  for (bool xored : {true, false}) {
    BindingResponseOptions o;
    (xored ? o.xorMapped : o.mapped) = r.mapped;
    o.otherAddress = r.otherAddress.value_or(SockAddr{});
    o.responseOrigin = r.responseOrigin.value_or(SockAddr{});
    o.software = m.software.value_or("");
    const auto bytes = buildBindingSuccess(m.transactionId, o);
    check(isStunPacket(bytes));
    auto again = parseMessage(bytes);
    check(again.ok());
    auto r2 = validateBindingResponse(*again, m.transactionId);
    check(r2.ok() && *r2 == r);
  }
  TransactionId other = m.transactionId;
  other[5] ^= 0x40;
  check(!validateBindingResponse(m, other).ok());
}

void roundTripError(const StunMessage& m) {
  const auto bytes = buildBindingError(m.transactionId, m.error->code, m.error->reason, m.fingerprint);
  auto again = parseMessage(bytes);
  check(again.ok() && again->error == m.error && again->cls == StunClass::error_response);
  check(!validateBindingResponse(*again, m.transactionId).ok());
}

void roundTripRequest(const StunMessage& m) {
  BindingRequestOptions o;
  o.change = m.changeRequest.value_or(ChangeRequest{});
  o.software = m.software.value_or("");
  o.fingerprint = m.fingerprint;
  const auto bytes = buildBindingRequest(m.transactionId, o);
  auto again = parseMessage(bytes);
  check(again.ok());
  check(again->cls == StunClass::request && again->method == kStunMethodBinding);
  check(again->transactionId == m.transactionId && again->fingerprint == m.fingerprint);
  check(again->changeRequest.value_or(ChangeRequest{}) == o.change);
  const std::string sent = again->software.value_or("");
  check(sent.size() <= kMaxSoftwareBytes && o.software.compare(0, sent.size(), sent) == 0);
  check(!validateBindingResponse(*again, m.transactionId).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  const bool stun = isStunPacket(in);
  auto m = parseMessage(in);
  if (!m) return 0;
  check(stun);
  checkLimits(*m, size);
  auto again = parseMessage(in);
  check(again.ok() && *again == *m);

  auto r = validateBindingResponse(*m, m->transactionId);
  auto r2 = validateBindingResponse(*m, m->transactionId);
  check(r.ok() == r2.ok());
  if (r.ok()) {
    check(*r == *r2);
    roundTripSuccess(*m, *r);
  } else {
    check(r.error().text() == r2.error().text());
  }
  if (m->method == kStunMethodBinding && m->cls == StunClass::error_response && m->error) roundTripError(*m);
  if (m->method == kStunMethodBinding && m->cls == StunClass::request) roundTripRequest(*m);
  return 0;
}
