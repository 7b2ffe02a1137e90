// The main thread after start-up: control signals are blocked everywhere and taken here,
// one at a time, with sigwaitinfo (no async-signal-safety concerns in the handlers).
#include "tools/tpengine/serve.h"

#include <pthread.h>

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

int serve_until_signal(engine::Engine& engine, unsigned drain_timeout_ms, const ServeHooks& hooks) {
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
            case SIGHUP:
                if (hooks.on_reload) {
                    // READY=1 follows whether the new file was taken or rejected: either way
                    // the service runs.
                    notify_reloading();
                    hooks.on_reload();
                    (void)sd_notify_state("READY=1");
                } else {
                    std::fprintf(stderr, "tpengine: SIGHUP ignored (nothing to reload)\n");
                }
                break;
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
