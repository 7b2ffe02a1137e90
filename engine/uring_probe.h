#pragma once
// The io_uring feature probe behind `tpengine --check` and start-up: is io_uring usable at all
// (kernel.io_uring_disabled, a seccomp filter, CONFIG_IO_URING), and does this kernel have each
// feature the engine relies on. Every problem names the feature and the kernel or sysctl that
// gives it, never a bare errno.

#include <string>
#include <vector>

namespace tp::engine {

struct UringProbe {
    std::vector<std::string> problems;  // each one stops the engine from running here
    std::vector<std::string> notes;     // optional features missing (the engine falls back)
    bool ok() const { return problems.empty(); }
};

// Sets up a small ring and exercises each required feature once (a few milliseconds).
UringProbe probe_uring();

// Why io_uring_setup failed with `err` (a positive errno), given the kernel.io_uring_disabled
// sysctl (-1 when the kernel has none). Pure: tested without changing the sysctl.
std::string uring_setup_failure(int err, int io_uring_disabled);

// Kernel.io_uring_disabled from /proc/sys, or -1 when absent (kernels before 6.6).
int read_io_uring_disabled();

}  // namespace tp::engine
