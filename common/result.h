// One result vocabulary for every fallible function in plexd.
//
// Result<T> holds either a value or an Error. An Error carries a message a
// user can act on ("cannot open /etc/plexd/config.yaml: permission denied")
// and, where it came from the OS, the errno value. A function either logs an
// error or returns it, never both. At C boundaries use negative errno.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace plexd {

class Error {
 public:
  Error() = default;
  explicit Error(std::string message, int errnum = 0) : message_(std::move(message)), errnum_(errnum) {}

  // An Error for a failed system call: "<context>: <strerror(errnum)>".
  static Error sys(std::string_view context, int errnum = errno);

  // The full text for a user: message plus the OS reason, if any.
  std::string text() const;
  const std::string& message() const { return message_; }
  int errnum() const { return errnum_; }

  // Prefix more context: Error("permission denied").wrap("cannot read token")
  // gives "cannot read token: permission denied".
  Error wrap(std::string_view context) const&;
  Error wrap(std::string_view context) &&;

 private:
  std::string message_;
  int errnum_ = 0;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(v_); }
  Error&& takeError() { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  Error&& takeError() { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status okStatus() { return {}; }

}  // namespace plexd
