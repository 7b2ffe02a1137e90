#include "tools/tpengine/serve.h"

#include <csignal>

namespace tp::tools {

// Placeholder: replaced by the real signal loop.
void block_control_signals() {
    std::signal(SIGPIPE, SIG_IGN);
}

int serve_until_signal(engine::Engine&, unsigned, const ServeHooks&) {
    return 2;
}

}  // namespace tp::tools
