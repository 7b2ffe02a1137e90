// Close records: formatting (logfmt / JSON), the SPSC ring and the writer thread. The writer
// polls every 20 ms while records are on (a wake-up per record would cost the workers a
// syscall each); it exists only when `log: {connections: true}`.
#include "engine/conn_log.h"

#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "engine/log.h"

namespace tp::engine {

void set_record_addr(sockaddr_in6& dst, const plan::SockAddr& src) {
    std::memset(&dst, 0, sizeof dst);
    if (src.len > 0 && src.len <= sizeof dst) {
        std::memcpy(&dst, &src.storage, src.len);
    }
}

namespace {

std::string addr_text(const sockaddr_in6& a) {
    char host[INET6_ADDRSTRLEN] = "?";
    char out[INET6_ADDRSTRLEN + 16];
    if (a.sin6_family == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(&a);
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "%s:%u", host, ntohs(s->sin_port));
        return out;
    }
    if (a.sin6_family == AF_INET6) {
        inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "[%s]:%u", host, ntohs(a.sin6_port));
        return out;
    }
    return "-";
}

std::string iso_ms(int64_t unix_ms) {
    time_t t = static_cast<time_t>(unix_ms / 1000);
    tm tmv;
    gmtime_r(&t, &tmv);
    char b[40];
    size_t n = std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tmv);
    std::snprintf(b + n, sizeof b - n, ".%03dZ", static_cast<int>(unix_ms % 1000));
    return b;
}

// Listener names are [A-Za-z0-9_.-] (config) or "relay": no quoting needed, but be safe.
std::string safe(const char* s) {
    std::string out;
    for (; *s; ++s) {
        char c = *s;
        out +=
            (c == '"' || c == '\\' || c == ' ' || c == '=' || static_cast<unsigned char>(c) < 0x20)
                ? '_'
                : c;
    }
    return out;
}

}  // namespace

std::string format_close_record(const CloseRecord& r, bool json) {
    char dur[32];
    std::snprintf(dur, sizeof dur, "%.3f", static_cast<double>(r.duration_ms) / 1000.0);
    std::string start = iso_ms(r.start_unix_ms);
    std::string listener = safe(r.listener);
    const char* reason = close_reason_name(r.reason);
    char bytes[64];
    std::string out;
    if (json) {
        out = "{\"event\":\"close\",\"start\":\"" + start + "\",\"duration_s\":" + dur +
              ",\"client\":\"" + addr_text(r.client) + "\",\"original\":\"" +
              addr_text(r.original) + "\",\"upstream\":\"" + addr_text(r.upstream) +
              "\",\"listener\":\"" + listener + "\",";
        std::snprintf(bytes, sizeof bytes, "\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64,
                      r.bytes_up, r.bytes_down);
        out += bytes;
        out += ",\"cause\":\"" + std::string(reason) + "\",\"worker\":" + std::to_string(r.worker) +
               "}";
        return out;
    }
    out = "event=close start=" + start + " duration=" + dur + "s client=" + addr_text(r.client) +
          " original=" + addr_text(r.original) + " upstream=" + addr_text(r.upstream) +
          " listener=" + listener;
    std::snprintf(bytes, sizeof bytes, " bytes_up=%" PRIu64 " bytes_down=%" PRIu64, r.bytes_up,
                  r.bytes_down);
    out += bytes;
    out += " cause=" + std::string(reason) + " worker=" + std::to_string(r.worker);
    return out;
}

CloseRing::CloseRing(uint32_t cap) {
    uint32_t n = 1;
    while (n < cap) {
        n <<= 1;
    }
    slots_ = std::make_unique<CloseRecord[]>(n);
    mask_ = n - 1;
}

bool CloseRing::push(const CloseRecord& r) {
    uint64_t t = tail_.load(std::memory_order_relaxed);
    if (t - head_.load(std::memory_order_acquire) > mask_) {
        dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return false;
    }
    slots_[t & mask_] = r;
    tail_.store(t + 1, std::memory_order_release);
    return true;
}

bool CloseRing::pop(CloseRecord& r) {
    uint64_t h = head_.load(std::memory_order_relaxed);
    if (h == tail_.load(std::memory_order_acquire)) {
        return false;
    }
    r = slots_[h & mask_];
    head_.store(h + 1, std::memory_order_release);
    return true;
}

ConnLog::ConnLog(unsigned workers, bool json, uint32_t capacity) : json_(json) {
    for (unsigned i = 0; i < (workers ? workers : 1); ++i) {
        rings_.push_back(std::make_unique<CloseRing>(capacity));
    }
    thread_ = std::thread([this] { run(); });
}

ConnLog::~ConnLog() {
    stop_.store(true);
    if (thread_.joinable()) {
        thread_.join();
    }
}

uint64_t ConnLog::dropped() const {
    uint64_t n = 0;
    for (const auto& r : rings_) {
        n += r->dropped();
    }
    return n;
}

bool ConnLog::drain(std::string& buf) {
    CloseRecord r;
    bool any = false;
    for (auto& ring : rings_) {
        while (ring->pop(r)) {
            buf += log::prefix(log::Level::info, log::journal(),
                               r.start_unix_ms + static_cast<int64_t>(r.duration_ms));
            buf += "tpengine: ";
            buf += format_close_record(r, json_);
            buf += '\n';
            any = true;
            if (buf.size() > 60'000) {
                break;  // write in pieces; the rest comes on the next pass
            }
        }
    }
    return any;
}

void ConnLog::run() {
    pthread_setname_np(pthread_self(), "tpengine-log");
    std::string buf;
    for (;;) {
        bool stopping = stop_.load();
        buf.clear();
        bool any = drain(buf);
        size_t off = 0;
        while (off < buf.size()) {
            ssize_t n = ::write(2, buf.data() + off, buf.size() - off);
            if (n <= 0) {
                break;
            }
            off += static_cast<size_t>(n);
        }
        if (stopping && !any) {
            return;
        }
        if (!any) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
}

}  // namespace tp::engine
