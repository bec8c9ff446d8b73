// Fuzz netd's rtnetlink reply decoders (plexd-netd/route/netlink_util.h:
// parseLink, parseRoute, parseAddress) with one message, as the receive loop
// hands them over: a header whose nlmsg_len lies within the bytes read. Never
// crashes; what a decoder returns is well-formed (a route's destination is a
// valid prefix, addresses have their family's length).
// Input: one byte choosing the message type, then the message.
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "plexd-netd/route/netlink_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 + sizeof(nlmsghdr)) return 0;
  const uint8_t which = data[0] % 3;
  // An aligned copy, like the receive buffer.
  std::vector<uint32_t> words((size - 1 + 3) / 4 + 1, 0);
  std::memcpy(words.data(), data + 1, size - 1);
  auto* h = reinterpret_cast<nlmsghdr*>(words.data());
  const size_t len = size - 1;
  if (h->nlmsg_len < sizeof(nlmsghdr) || h->nlmsg_len > len) return 0;  // the receive loop's NLMSG_OK
  using namespace plexd::netd;
  if (which == 0) {
    h->nlmsg_type = RTM_NEWLINK;
    if (auto link = nl::parseLink(h)) check(link->name.size() < 4096);
  } else if (which == 1) {
    h->nlmsg_type = RTM_NEWROUTE;
    auto r = nl::parseRoute(h);
    if (r && *r) {
      check((*r)->dst.validate().ok());
      if ((*r)->prefsrc) check((*r)->prefsrc->family == (*r)->dst.family);
    }
  } else {
    h->nlmsg_type = RTM_NEWADDR;
    auto a = nl::parseAddress(h, 7);
    if (a && *a) check((*a)->address.family == 4 || (*a)->address.family == 6);
  }
  return 0;
}
