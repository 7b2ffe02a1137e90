#pragma once
// Collecting diagnostics while loading a rule set: a capped list of tp::config::Diagnostic,
// each tied to a file position and a key path.

#include <string>
#include <vector>

#include "config/load.h"

namespace tp::config {

// A place in a file: 1-based line and column; line 0 = not tied to a place.
struct Pos {
    int line = 0;
    int column = 0;
};

class Diags {
  public:
    static constexpr size_t kMaxErrors = 50;

    explicit Diags(std::string file) : file_(std::move(file)) {}

    const std::string& file() const { return file_; }
    void error(Pos pos, std::string key, std::string message) {
        error_in(file_, pos, std::move(key), std::move(message));
    }
    // An error in another file (an `@file` list).
    void error_in(const std::string& file, Pos pos, std::string key, std::string message);

    bool empty() const { return list_.empty(); }
    size_t count() const { return list_.size(); }
    // True once the cap is reached: callers stop walking long lists.
    bool full() const { return list_.size() >= kMaxErrors; }
    std::vector<Diagnostic> take() { return std::move(list_); }

  private:
    std::string file_;
    std::vector<Diagnostic> list_;
};

}  // namespace tp::config
