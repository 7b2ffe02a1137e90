#pragma once
// The engine's public face: start the per-core workers from a Plan, change their listeners on
// reload, stop and drain. Front ends (tools/) use only this header, stats.h and result.h.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "config/plan.h"
#include "engine/result.h"
#include "engine/stats.h"

namespace tp::engine {

class Engine {
  public:
    // Binds every listener on every worker (SO_REUSEPORT), then starts the worker threads.
    // Fails, with nothing left open, if any listener cannot be bound (port in use, EPERM...).
    static Result<std::unique_ptr<Engine>> start(const plan::Plan& plan);

    // Reload: listeners are matched by name; new ones are bound, removed ones stop accepting,
    // changed ones are replaced. Live connections continue. On failure nothing changes.
    Result<void> update(const plan::Plan& plan);

    // Stop accepting on every listener at once (first step of a graceful stop).
    void stop_accepting();

    // Waits until no connection is left or `timeout` passes, then closes what is left and joins
    // the workers. Returns true if every connection finished on its own.
    bool drain(std::chrono::milliseconds timeout);

    // Counters summed over workers, plus each worker's own and each current listener's.
    // Safe to call from any thread, also while another one reloads.
    StatsSnapshot stats() const;

    // The live connections, asked of every worker through its command queue and answered
    // between batches. Workers that have not answered by `timeout` are left out.
    std::vector<ConnInfo> connections(std::chrono::milliseconds timeout) const;

    // Each listener's bound address, in plan order (port 0 in the plan resolved to the port
    // the kernel chose, shared by every worker).
    std::vector<plan::SockAddr> listening_addresses() const;
    unsigned worker_count() const;
    uint64_t log_records_dropped() const;  // close records a full queue could not take
    const char* ring_mode() const;         // io_uring set-up mode the workers got (for logs)

    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

  private:
    Engine() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace tp::engine
