#include "ipc/wire.h"

#include <cstring>

namespace plexd::ipc::wire {

void Writer::bytes(const void* p, size_t n) {
  if (n == 0) return;
  const auto* b = static_cast<const uint8_t*>(p);
  out_.insert(out_.end(), b, b + n);
}

bool Reader::bytes(void* p, size_t n) {
  if (in_.size() - pos_ < n) return false;
  if (n != 0) std::memcpy(p, in_.data() + pos_, n);
  pos_ += n;
  return true;
}

}  // namespace plexd::ipc::wire
