#include "common/result.h"

#include <cstring>

namespace plexd {

Error Error::sys(std::string_view context, int errnum) { return Error(std::string(context), errnum); }

std::string Error::text() const {
  if (errnum_ == 0) return message_;
  char buf[128];
  // GNU strerror_r returns a pointer that may or may not be buf.
  const char* reason = strerror_r(errnum_, buf, sizeof buf);
  if (message_.empty()) return reason;
  return message_ + ": " + reason;
}

Error Error::wrap(std::string_view context) const& {
  Error copy = *this;
  return std::move(copy).wrap(context);
}

Error Error::wrap(std::string_view context) && {
  std::string m(context);
  if (!message_.empty()) {
    m += ": ";
    m += message_;
  }
  message_ = std::move(m);
  return std::move(*this);
}

}  // namespace plexd
