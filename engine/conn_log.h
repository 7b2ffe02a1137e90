#pragma once
// Per-connection close records: a fixed-size record per closed connection, handed by its worker
// to one writer thread through a per-worker single-producer single-consumer ring. A full ring
// drops the record and counts it: a worker never waits for the log.

#include <netinet/in.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/plan.h"
#include "engine/stats.h"

namespace tp::engine {

// Plain data, filled by the worker with copies and no system call: the writer thread turns the
// monotonic stamp into wall-clock time and formats it.
struct CloseRecord {
    int64_t start_unix_ms = 0;  // wall clock; the writer sets it from end_mono_ms when that is set
    uint64_t duration_ms = 0;
    uint64_t end_mono_ms = 0;  // CLOCK_MONOTONIC at close (worker); 0 = start_unix_ms is set
    sockaddr_in6 client{};     // AF_INET addresses are stored as sockaddr_in in the same bytes
    sockaddr_in6 original{};
    sockaddr_in6 upstream{};
    char listener[48] = {};
    char rule[48] = {};  // the rule that sent the connection here; "" = not known for sure
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    CloseReason reason = CloseReason::client_eof;
    uint16_t worker = 0;
};

void set_record_addr(sockaddr_in6& dst, const plan::SockAddr& src);
void set_record_name(char (&dst)[48], const std::string& src);  // truncated to 47 bytes

// Formatting without allocation: the writer thread formats every record, so its cost counts
// in the relay's CPU. It remembers the text of the last second it formatted.
class CloseFormatter {
  public:
    // The largest line format() writes (three IPv6 addresses, two names, every number).
    static constexpr size_t kMaxLine = 768;
    // One line, without the newline: logfmt (`key=value ...`) or a JSON object. `out` has room
    // for kMaxLine bytes; returns the length.
    size_t format(const CloseRecord& r, bool json, char* out);
    // "2023-11-14T22:13:20.123Z" (24 bytes, no terminator).
    void iso_ms(int64_t unix_ms, char* out);

  private:
    int64_t sec_ = INT64_MIN;
    char sec_text_[20] = {};  // "YYYY-MM-DDTHH:MM:SS"
};

// The same line as a string (tests, and anything that is not the writer thread).
std::string format_close_record(const CloseRecord& r, bool json);

// Single producer (the worker), single consumer (the writer thread).
class CloseRing {
  public:
    explicit CloseRing(uint32_t capacity_pow2);
    bool push(const CloseRecord& r);  // false (and counted) when full
    bool pop(CloseRecord& r);
    uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

  private:
    std::unique_ptr<CloseRecord[]> slots_;
    uint32_t mask_;
    alignas(64) std::atomic<uint64_t> head_{0};  // written by the consumer
    alignas(64) std::atomic<uint64_t> tail_{0};  // written by the producer
    std::atomic<uint64_t> dropped_{0};           // written by the producer
};

// The writer thread: drains every worker's ring to stderr (one write per batch).
class ConnLog {
  public:
    ConnLog(unsigned workers, bool json, uint32_t capacity = 4096);
    ~ConnLog();  // writes what is queued, then stops
    ConnLog(const ConnLog&) = delete;
    ConnLog& operator=(const ConnLog&) = delete;
    CloseRing& ring(unsigned worker) { return *rings_[worker]; }
    uint64_t dropped() const;

  private:
    void run();
    bool drain(char* buf, size_t cap, size_t& len);
    std::vector<std::unique_ptr<CloseRing>> rings_;
    bool json_;
    CloseFormatter fmt_;    // writer thread only
    size_t next_ring_ = 0;  // writer thread only
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace tp::engine
