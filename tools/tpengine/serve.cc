// The main thread after start-up: control signals are blocked everywhere and taken here,
// one at a time, with sigwaitinfo (no async-signal-safety concerns in the handlers).
#include "tools/tpengine/serve.h"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>

#include "tools/tpengine/sd_notify.h"

namespace tp::tools {

namespace {
sigset_t control_set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    return set;
}
}  // namespace

void block_control_signals() {
    sigset_t set = control_set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

double unix_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

RunState::RunState() : start_unix_(unix_now()), start_(std::chrono::steady_clock::now()) {
    r_.last_success_unix = start_unix_;
}

void RunState::reload_begin() {
    std::lock_guard<std::mutex> lock(mu_);
    ++begun_;
}

void RunState::reload_end(const ReloadOutcome& o) {
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = begun_;
    r_.any = true;
    r_.last = o;
    r_.last_unix = unix_now();
    if (o.ok) {
        ++r_.ok;
        r_.last_success_unix = r_.last_unix;
    } else {
        ++r_.failed;
    }
    cv_.notify_all();
}

ReloadOutcome RunState::request_reload(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    uint64_t want = begun_ + 1;
    ::kill(::getpid(), SIGHUP);  // taken by serve_until_signal on the main thread
    if (!cv_.wait_for(lock, timeout, [&] { return ended_ >= want; })) {
        return ReloadOutcome{false, "timed out waiting for the reload to finish"};
    }
    return r_.last;
}

RunState::Reloads RunState::reloads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return r_;
}

double RunState::uptime_s() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void RunState::set_rule_table(const std::string& t) {
    std::lock_guard<std::mutex> lock(mu_);
    table_ = t;
}

std::string RunState::rule_table() const {
    std::lock_guard<std::mutex> lock(mu_);
    return table_;
}

int serve_until_signal(engine::Engine& engine, unsigned drain_timeout_ms, const ServeHooks& hooks,
                       RunState* state) {
    sigset_t set = control_set();
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) {
            if (errno == EINTR) {
                continue;
            }
            std::perror("tpengine: sigwaitinfo");
            return 1;
        }
        switch (sig) {
            case SIGUSR1:
                std::fputs(engine.stats().format().c_str(), stderr);
                break;
            case SIGHUP: {
                if (state) {
                    state->reload_begin();
                }
                ReloadOutcome o{false, "nothing to reload (tpengine relay has no file)"};
                if (hooks.on_reload) {
                    // READY=1 follows whether the new file was taken or rejected: either way
                    // the service runs.
                    notify_reloading();
                    o = hooks.on_reload();
                    (void)sd_notify_state("READY=1");
                } else {
                    std::fprintf(stderr, "tpengine: SIGHUP ignored (nothing to reload)\n");
                }
                if (state) {
                    state->reload_end(o);
                }
                break;
            }
            case SIGTERM:
            case SIGINT: {
                notify_stopping();
                if (hooks.before_stop) {
                    hooks.before_stop();
                }
                engine.stop_accepting();
                bool clean = engine.drain(std::chrono::milliseconds(drain_timeout_ms));
                if (!clean) {
                    std::fprintf(stderr,
                                 "tpengine: drain timeout (%u ms): remaining connections closed\n",
                                 drain_timeout_ms);
                }
                std::fputs(engine.stats().format().c_str(), stderr);
                return 0;
            }
            default:
                break;
        }
    }
}

}  // namespace tp::tools
