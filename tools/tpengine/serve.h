#pragma once
// The main thread's life after the engine has started: wait for signals and act on them.
// SIGTERM/SIGINT: stop accepting, drain, return. SIGHUP: on_reload. SIGUSR1: print stats.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "engine/engine.h"

namespace tp::tools {

// Call first thing in main(), before any thread exists, so every worker inherits the mask and
// the signals are only ever taken by serve_until_signal(). Also ignores SIGPIPE.
void block_control_signals();

// How a reload ended: ok, or the errors (with FILE:LINE:COLUMN positions when the file was bad).
struct ReloadOutcome {
    bool ok = false;
    std::string message;
};

struct ServeHooks {
    std::function<ReloadOutcome()> on_reload;  // SIGHUP; absent = refused with a log line
    std::function<void()> before_stop;         // SIGTERM/SIGINT, before accept stops (rules out)
};

// What the main thread shares with the control thread (tools/tpengine/control.h): start time,
// reload outcomes, and the nft table whose rule counters to read. Reloads stay on the main
// thread: the control thread asks for one with SIGHUP and waits for its outcome here.
class RunState {
  public:
    RunState();
    void reload_begin();
    void reload_end(const ReloadOutcome& o);
    // Raises SIGHUP and waits for a reload that began after this call; {false, "timed out"}
    // after `timeout`.
    ReloadOutcome request_reload(std::chrono::milliseconds timeout);

    struct Reloads {
        uint64_t ok = 0;
        uint64_t failed = 0;
        double last_success_unix = 0;  // the start counts as a success
        bool any = false;              // a reload happened since the start
        ReloadOutcome last;
        double last_unix = 0;
    };
    Reloads reloads() const;
    double start_unix() const { return start_unix_; }
    double uptime_s() const;
    void set_rule_table(const std::string& t);
    std::string rule_table() const;  // "" when no rules are applied

  private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    uint64_t begun_ = 0;
    uint64_t ended_ = 0;
    Reloads r_;
    std::string table_;
    double start_unix_ = 0;
    std::chrono::steady_clock::time_point start_;
};

double unix_now();

// Returns the process exit code (0 on a clean stop). `state` (optional) records reloads.
int serve_until_signal(engine::Engine& engine, unsigned drain_timeout_ms, const ServeHooks& hooks,
                       RunState* state = nullptr);

}  // namespace tp::tools
