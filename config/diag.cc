// Diagnostic formatting and the capped error collector.

#include "config/diag.h"

namespace tp::config {

std::string Diagnostic::format() const {
    std::string out = file;
    if (line > 0) {
        out += ':' + std::to_string(line) + ':' + std::to_string(column);
    }
    out += ": ";
    if (!key.empty()) {
        out += key + ": ";
    }
    out += message;
    return out;
}

void Diags::error_in(const std::string& file, Pos pos, std::string key, std::string message) {
    if (list_.size() > kMaxErrors) {
        return;
    }
    if (list_.size() == kMaxErrors) {
        list_.push_back({file_, 0, 0, "", "too many errors; stopping here"});
        return;
    }
    list_.push_back({file, pos.line, pos.column, std::move(key), std::move(message)});
}

}  // namespace tp::config
