#pragma once
// The main thread's life after the engine has started: wait for signals and act on them.
// SIGTERM/SIGINT: stop accepting, drain, return. SIGHUP: on_reload. SIGUSR1: print stats.

#include <functional>

#include "engine/engine.h"

namespace tp::tools {

// Call first thing in main(), before any thread exists, so every worker inherits the mask and
// the signals are only ever taken by serve_until_signal(). Also ignores SIGPIPE.
void block_control_signals();

struct ServeHooks {
    std::function<void()> on_reload;    // SIGHUP; absent = ignored with a log line
    std::function<void()> before_stop;  // SIGTERM/SIGINT, before accept stops (rules out)
};

// Returns the process exit code (0 on a clean stop).
int serve_until_signal(engine::Engine& engine, unsigned drain_timeout_ms, const ServeHooks& hooks);

}  // namespace tp::tools
