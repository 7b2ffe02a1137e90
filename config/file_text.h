#pragma once
// Reading a whole small input file (the rule set, an `@file` address list) so that every
// failure is seen: a read error after open must never pass for a shorter file.

#include <string>

namespace tp::config {

struct FileRead {
    enum class Status { ok, sys_error, not_regular, too_large };
    Status status = Status::ok;
    int error = 0;  // errno, for sys_error
};

// Reads `path` (a regular file of at most kMaxFileBytes) into `text`.
FileRead read_file_text(const std::string& path, std::string& text);

}  // namespace tp::config
