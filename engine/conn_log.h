#pragma once
// Per-connection close records: a fixed-size record per closed connection, handed by its worker
// to one writer thread through a per-worker single-producer single-consumer ring. A full ring
// drops the record and counts it: a worker never waits for the log.

#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/plan.h"
#include "engine/stats.h"

namespace tp::engine {

struct CloseRecord {
    int64_t start_unix_ms = 0;
    uint64_t duration_ms = 0;
    sockaddr_in6 client{};  // AF_INET addresses are stored as sockaddr_in in the same bytes
    sockaddr_in6 original{};
    sockaddr_in6 upstream{};
    char listener[48] = {};
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    CloseReason reason = CloseReason::client_eof;
    uint16_t worker = 0;
};

void set_record_addr(sockaddr_in6& dst, const plan::SockAddr& src);

// One line, without the newline: logfmt (`key=value ...`) or a JSON object (pure; tested).
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
    bool drain(std::string& buf);
    std::vector<std::unique_ptr<CloseRing>> rings_;
    bool json_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace tp::engine
