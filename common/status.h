// Status and Result<T>: errors as values in the core.
//
// A Status is either ok or carries an errno-style code and a human message with
// context added at each layer ("journal commit: disk I/O error"). The FUSE
// boundary turns it into an errno exactly once. Thread-compatible (a value type).
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace scribefs {

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  static Status Ok() { return Status(); }
  // code is an errno value (EIO when no better one exists); never 0.
  static Status Error(int code, std::string message) { return Status(code ? code : EIO, std::move(message)); }

  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& message() const { return message_; }
  // "context: message" - keeps the errno code.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }
  std::string ToString() const { return ok() ? "ok" : message_; }

 private:
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}
  int code_ = 0;
  std::string message_;
};

// The single place errno becomes a Status: "context: strerror(err)".
Status PosixError(const std::string& context, int err);

// Result<T>: a T or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                           // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}                    // NOLINT: must not be ok
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace scribefs

#define SCRIBEFS_RETURN_IF_ERROR(expr)   \
  do {                                   \
    ::scribefs::Status _st = (expr);     \
    if (!_st.ok()) return _st;           \
  } while (0)
