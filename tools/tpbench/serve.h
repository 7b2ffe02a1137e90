#pragma once
// `tpbench serve`: the servers the workloads need (echo, sink, source, http), one io_uring and one
// SO_REUSEPORT listener per thread, multishot accept, provided buffers for receives.

#include <atomic>
#include <string>
#include <vector>

#include "tools/tpbench/net.h"

namespace tp::bench {

enum class ServeMode { Echo, Sink, Source, Http };

struct ServeOptions {
    SockAddr listen;
    ServeMode mode = ServeMode::Echo;
    int threads = 1;
    std::vector<int> cpus;
};

// Runs until `stop` becomes true. Prints "tpbench: serve MODE listening on ADDR" to stderr once
// every listener is bound (port 0 picks one port shared by all threads). Returns an exit code.
int run_serve(const ServeOptions& opt, const std::atomic<bool>& stop);

}  // namespace tp::bench
