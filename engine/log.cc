// Log lines: level filter, prefix, one write(2) per line (lines from threads never interleave).
#include "engine/log.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace tp::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
std::atomic<bool> g_journal{false};
bool g_init = false;

long long unix_ms_now() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}
}  // namespace

void init(Level level, Prefix p) {
    g_level.store(static_cast<int>(level));
    bool j = p == Prefix::journal ||
             (p == Prefix::automatic && std::getenv("JOURNAL_STREAM") != nullptr);
    g_journal.store(j);
    g_init = true;
}

bool enabled(Level level) {
    return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed);
}

bool journal() {
    if (!g_init) {
        return std::getenv("JOURNAL_STREAM") != nullptr;
    }
    return g_journal.load(std::memory_order_relaxed);
}

bool parse_level(const std::string& t, Level& out) {
    if (t == "error") {
        out = Level::error;
    } else if (t == "warning") {
        out = Level::warning;
    } else if (t == "info") {
        out = Level::info;
    } else if (t == "debug") {
        out = Level::debug;
    } else {
        return false;
    }
    return true;
}

std::string prefix(Level level, bool journal, long long unix_ms) {
    char b[48];
    if (journal) {
        std::snprintf(b, sizeof b, "<%d>", static_cast<int>(level));
        return b;
    }
    time_t t = static_cast<time_t>(unix_ms / 1000);
    tm tmv;
    gmtime_r(&t, &tmv);
    size_t n = std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tmv);
    std::snprintf(b + n, sizeof b - n, ".%03dZ ", static_cast<int>(unix_ms % 1000));
    return b;
}

void vwrite(Level level, const char* fmt, va_list ap) {
    if (!enabled(level)) {
        return;
    }
    std::string line = prefix(level, journal(), unix_ms_now());
    char buf[2048];
    int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0) {
        return;
    }
    line.append(buf, static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1);
    if (line.empty() || line.back() != '\n') {
        line += '\n';
    }
    std::fflush(stderr);  // keep order with anything still buffered in stdio
    size_t off = 0;
    while (off < line.size()) {
        ssize_t w = ::write(2, line.data() + off, line.size() - off);
        if (w <= 0) {
            break;
        }
        off += static_cast<size_t>(w);
    }
}

void write(Level level, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vwrite(level, fmt, ap);
    va_end(ap);
}

}  // namespace tp::log
