#pragma once
// Result<T>: a value or a negative errno, in the shape of std::expected (C++23) so it can be
// swapped for it later. The engine returns errors; it never throws.

#include <cerrno>
#include <utility>
#include <variant>

namespace tp {

// An error: a positive errno value plus a static description of the step that failed.
struct Error {
    int code = 0;           // errno value (positive)
    const char* what = "";  // e.g. "bind listener"; static storage only
    int listener = -1;      // index of the plan listener concerned, -1 if none
};

template <typename T>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error e) : v_(e) {}

    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }
    T& value() & { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    const T& value() const& { return std::get<0>(v_); }
    T& operator*() & { return value(); }
    T* operator->() { return &value(); }
    const Error& error() const { return std::get<1>(v_); }

  private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
  public:
    Result() = default;
    Result(Error e) : err_(e), ok_(false) {}

    bool has_value() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    const Error& error() const { return err_; }

  private:
    Error err_{};
    bool ok_ = true;
};

// Builds an Error from the current errno.
inline Error errno_error(const char* what) noexcept {
    return Error{errno, what};
}

}  // namespace tp
