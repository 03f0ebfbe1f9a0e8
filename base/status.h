// base/status.h — the error vocabulary shared by every clickdiff module.
//
// A Status is either OK or an error code with a human-readable message that names what went wrong
// (the file, key, field or limit). Result<T> holds a value or a non-OK Status. Both are cheap to
// move, immutable after construction and safe to read from several threads.
//
// Module boundaries return these instead of throwing; exceptions from LibTorch, TBB, yaml-cpp or
// protobuf are caught at the edge of the module that calls them and turned into a Status.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace clickdiff {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller's input is malformed or out of range
  kNotFound,         // a file, key or record does not exist
  kAlreadyExists,
  kFailedPrecondition,  // the system is not in a state to do this (locked DB, no model yet)
  kOutOfRange,
  kResourceExhausted,  // a size or memory limit was hit
  kUnavailable,        // a broker, socket or device could not be reached; retrying may help
  kDataLoss,           // stored data is corrupt or truncated
  kInternal,
};

// Returns the canonical lower-case name of `code`, e.g. "invalid_argument".
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "OK" or "<code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string msg) {
  return Status(StatusCode::kInvalidArgument, std::move(msg));
}
inline Status NotFound(std::string msg) { return Status(StatusCode::kNotFound, std::move(msg)); }
inline Status FailedPrecondition(std::string msg) {
  return Status(StatusCode::kFailedPrecondition, std::move(msg));
}
inline Status OutOfRange(std::string msg) {
  return Status(StatusCode::kOutOfRange, std::move(msg));
}
inline Status ResourceExhausted(std::string msg) {
  return Status(StatusCode::kResourceExhausted, std::move(msg));
}
inline Status Unavailable(std::string msg) {
  return Status(StatusCode::kUnavailable, std::move(msg));
}
inline Status DataLoss(std::string msg) { return Status(StatusCode::kDataLoss, std::move(msg)); }
inline Status Internal(std::string msg) { return Status(StatusCode::kInternal, std::move(msg)); }

// A value of type T or the error that prevented computing it.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (status_.ok()) status_ = Internal("Result constructed from an OK status without a value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  // Precondition: ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace clickdiff

// Returns early from the enclosing function when `expr` yields a non-OK Status.
#define CLICKDIFF_RETURN_IF_ERROR(expr)                    \
  do {                                                     \
    ::clickdiff::Status _clickdiff_status = (expr);        \
    if (!_clickdiff_status.ok()) return _clickdiff_status; \
  } while (0)
