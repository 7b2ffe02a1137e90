#pragma once
// Process-wide log lines on stderr, by level. Each line is written with one write(2) and
// starts with the sd-daemon priority prefix ("<3>" error ... "<7>" debug) when stderr is the
// journal (JOURNAL_STREAM set) or on request, else with a UTC timestamp, so journald files
// every line at its level and a plain terminal or file still shows when it happened.

#include <cstdarg>
#include <string>

namespace tp::log {

enum class Level : int { error = 3, warning = 4, info = 6, debug = 7 };  // syslog priorities
enum class Prefix { automatic, journal, timestamp };

// Call once at start (before threads log). `automatic` picks journal if JOURNAL_STREAM is set.
void init(Level level, Prefix prefix);
bool enabled(Level level);
bool journal();
// "error", "warning", "info", "debug" -> level; false for anything else.
bool parse_level(const std::string& text, Level& out);

// The prefix for a line at `level`: "<N>" for the journal, else "YYYY-MM-DDTHH:MM:SS.mmmZ "
// for `unix_ms` (pure; tested).
std::string prefix(Level level, bool journal, long long unix_ms);

void write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void vwrite(Level level, const char* fmt, va_list ap);

}  // namespace tp::log
