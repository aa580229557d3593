// Typed errors: what failed, where, and the errno behind it. Never a bare bool.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace colo {

struct Error {
  std::string code;     // stable machine-readable code, e.g. "io", "not_found"
  std::string message;  // human-readable, names the object involved
  int errnum = 0;       // errno when an OS call failed, else 0

  // An OS call failed: `site` names the call and its object, e.g. "connect(/run/colo/cni.sock)".
  static Error fromErrno(const std::string& site, int err = errno);
  static Error make(std::string code, std::string message) { return Error{std::move(code), std::move(message), 0}; }
  std::string str() const;
};

// A value or an error. Small stand-in for std::expected (C++23).
template <class T, class E = Error>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}        // NOLINT: implicit by design
  Expected(E error) : v_(std::in_place_index<1>, std::move(error)) {}        // NOLINT: implicit by design
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const E& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

template <class E>
class [[nodiscard]] Expected<void, E> {
 public:
  Expected() = default;
  Expected(E error) : err_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const E& error() const { return err_; }

 private:
  E err_{};
  bool ok_ = true;
};

using Status = Expected<void>;

}  // namespace colo
