// Close records: formatting (logfmt / JSON), the SPSC ring and the writer thread. The writer
// polls every 20 ms while records are on (a wake-up per record would cost the workers a
// syscall each); it exists only when `log: {connections: true}`. Its formatting runs on the
// relay's CPU budget too, so it allocates nothing and calls no printf or strftime per record.
#include "engine/conn_log.h"

#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
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

void set_record_name(char (&dst)[48], const std::string& src) {
    size_t n = src.size() < sizeof dst - 1 ? src.size() : sizeof dst - 1;
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

namespace {

// Appends to a buffer the caller sized (CloseFormatter::kMaxLine): no checks per byte.
struct Out {
    char* p;
    void put(const char* s, size_t n) {
        std::memcpy(p, s, n);
        p += n;
    }
    void str(const char* s) { put(s, std::strlen(s)); }
    template <size_t N>
    void lit(const char (&s)[N]) {
        put(s, N - 1);
    }
    void u64(uint64_t v) {
        char t[20];
        size_t n = 0;
        do {
            t[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (n > 0) {
            *p++ = t[--n];
        }
    }
    void pad3(unsigned v) {
        *p++ = static_cast<char>('0' + v / 100);
        *p++ = static_cast<char>('0' + v / 10 % 10);
        *p++ = static_cast<char>('0' + v % 10);
    }
    void addr(const sockaddr_in6& a) {
        if (a.sin6_family == AF_INET) {
            const auto* s = reinterpret_cast<const sockaddr_in*>(&a);
            const auto* b = reinterpret_cast<const uint8_t*>(&s->sin_addr);
            for (int i = 0; i < 4; ++i) {
                u64(b[i]);
                *p++ = i < 3 ? '.' : ':';
            }
            u64(ntohs(s->sin_port));
            return;
        }
        if (a.sin6_family == AF_INET6) {
            *p++ = '[';
            char host[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
            put(host, std::strlen(host));
            lit("]:");
            u64(ntohs(a.sin6_port));
            return;
        }
        *p++ = '-';
    }
    // Listener and rule names are [A-Za-z0-9_.-] (config) or "relay": no quoting needed, but
    // anything that would break a logfmt or JSON value becomes '_'.
    void name(const char* s) {
        for (size_t i = 0; i < 47 && s[i] != '\0'; ++i) {
            char c = s[i];
            bool bad = c == '"' || c == '\\' || c == ' ' || c == '=' ||
                       static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e;
            *p++ = bad ? '_' : c;
        }
    }
};

}  // namespace

void CloseFormatter::iso_ms(int64_t unix_ms, char* out) {
    int64_t sec = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
    if (sec != sec_) {
        time_t t = static_cast<time_t>(sec);
        tm tmv;
        gmtime_r(&t, &tmv);
        char b[32];
        if (std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tmv) != 19) {
            std::memcpy(b, "0000-00-00T00:00:00", 19);  // years beyond 9999: not from a clock
        }
        std::memcpy(sec_text_, b, 19);
        sec_ = sec;
    }
    std::memcpy(out, sec_text_, 19);
    Out o{out + 19};
    *o.p++ = '.';
    o.pad3(static_cast<unsigned>(unix_ms - sec * 1000));
    *o.p++ = 'Z';
}

size_t CloseFormatter::format(const CloseRecord& r, bool json, char* out) {
    Out o{out};
    const char* reason = close_reason_name(r.reason);
    if (json) {
        o.lit("{\"event\":\"close\",\"start\":\"");
    } else {
        o.lit("event=close start=");
    }
    iso_ms(r.start_unix_ms, o.p);
    o.p += 24;
    o.str(json ? "\",\"duration_s\":" : " duration=");
    o.u64(r.duration_ms / 1000);
    *o.p++ = '.';
    o.pad3(static_cast<unsigned>(r.duration_ms % 1000));
    o.str(json ? ",\"client\":\"" : "s client=");
    o.addr(r.client);
    o.str(json ? "\",\"original\":\"" : " original=");
    o.addr(r.original);
    o.str(json ? "\",\"upstream\":\"" : " upstream=");
    o.addr(r.upstream);
    o.str(json ? "\",\"listener\":\"" : " listener=");
    o.name(r.listener);
    if (r.rule[0] != '\0') {
        o.str(json ? "\",\"rule\":\"" : " rule=");
        o.name(r.rule);
    }
    o.str(json ? "\",\"bytes_up\":" : " bytes_up=");
    o.u64(r.bytes_up);
    o.str(json ? ",\"bytes_down\":" : " bytes_down=");
    o.u64(r.bytes_down);
    o.str(json ? ",\"cause\":\"" : " cause=");
    o.put(reason, std::strlen(reason));
    o.str(json ? "\",\"worker\":" : " worker=");
    o.u64(r.worker);
    if (json) {
        *o.p++ = '}';
    }
    return static_cast<size_t>(o.p - out);
}

std::string format_close_record(const CloseRecord& r, bool json) {
    char b[CloseFormatter::kMaxLine];
    CloseFormatter f;
    return std::string(b, f.format(r, json, b));
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

// Formats what every ring holds into `buf` (up to `cap`), turning the workers' monotonic stamps
// into wall-clock time with one clock reading per pass.
bool ConnLog::drain(char* buf, size_t cap, size_t& len) {
    timespec rt;
    timespec mono;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    int64_t rt_ms = static_cast<int64_t>(rt.tv_sec) * 1000 + rt.tv_nsec / 1'000'000;
    int64_t mono_ms = static_cast<int64_t>(mono.tv_sec) * 1000 + mono.tv_nsec / 1'000'000;
    bool journal = log::journal();
    std::string jprefix = journal ? log::prefix(log::Level::info, true, 0) : std::string();
    static constexpr char kTag[] = "tpengine: ";
    size_t need = 32 + sizeof kTag + CloseFormatter::kMaxLine + 1;
    CloseRecord r;
    bool any = false;
    // Each pass starts at the next ring: a busy worker cannot keep the others' records waiting.
    size_t n = rings_.size();
    size_t first = next_ring_++ % n;
    for (size_t k = 0; k < n; ++k) {
        CloseRing* ring = rings_[(first + k) % n].get();
        while (len + need <= cap && ring->pop(r)) {
            if (r.end_mono_ms != 0) {
                int64_t end = rt_ms - (mono_ms - static_cast<int64_t>(r.end_mono_ms));
                r.start_unix_ms = end - static_cast<int64_t>(r.duration_ms);
            }
            char* p = buf + len;
            if (journal) {
                std::memcpy(p, jprefix.data(), jprefix.size());
                p += jprefix.size();
            } else {
                fmt_.iso_ms(r.start_unix_ms + static_cast<int64_t>(r.duration_ms), p);
                p += 24;
                *p++ = ' ';
            }
            std::memcpy(p, kTag, sizeof kTag - 1);
            p += sizeof kTag - 1;
            p += fmt_.format(r, json_, p);
            *p++ = '\n';
            len = static_cast<size_t>(p - buf);
            any = true;
        }
    }
    return any;
}

void ConnLog::run() {
    pthread_setname_np(pthread_self(), "tpengine-log");
    constexpr size_t kBuf = 64 * 1024;  // one write(2) per pass, at most this much
    auto buf = std::make_unique<char[]>(kBuf);
    for (;;) {
        bool stopping = stop_.load();
        size_t len = 0;
        bool any = drain(buf.get(), kBuf, len);
        size_t off = 0;
        while (off < len) {
            ssize_t n = ::write(2, buf.get() + off, len - off);
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
