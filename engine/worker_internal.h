#pragma once
// What the worker's event loop (worker.cc) and its TCP connection handling (tcp_conn.cc) share:
// tuning constants and the user_data helpers. Internal to engine/.

#include <time.h>

#include <cstddef>
#include <cstdint>

#include "engine/relay.h"
#include "engine/user_data.h"

namespace tp::engine::worker_detail {
constexpr uint32_t kTickMs = 100;
constexpr uint64_t kFdPauseMs = 100;
// For this long after fd exhaustion the listen backlog is likely full of clients that gave up:
// each accepted socket is checked (client_gone) so they do not spend the descriptors the live
// ones need. Outside such episodes accept pays nothing for it.
constexpr uint64_t kFdRecoverMs = 5000;
// Buffer memory goes back to the kernel (BufRing::trim) once the receives of the last check
// period would re-touch at most 1/kTrimQuiet of the ring: checked every kTrimCheckMs while
// connections exist, at every tick once none is left.
constexpr uint64_t kTrimCheckMs = 1000;
constexpr uint32_t kTrimQuiet = 8;
constexpr uint32_t kTokens = 4096;          // chain ids for bytes held in pipes
constexpr uint32_t kMaxSplicedDirs = 2048;  // each holds at most Relay::depth tokens
constexpr int kPipeSize = 1 << 20;
constexpr size_t kSpliceChunk = 512 * 1024;  // two chunks fit the pipe
// A send of at most this many bytes, in a pass with at most this many completions, is made
// with send(2) at once; larger or busier ones are batched into the ring (measured in
// bench/RESULTS.md: -6.5% relay CPU per ping-pong request, rr64 unchanged).
constexpr uint32_t kDirectSendMax = 16384;
constexpr unsigned kDirectSendBatch = 2;

template <typename C>
inline bool closing(const C& c) {
    return c.relay.phase() == Relay::Phase::closing || c.relay.phase() == Relay::Phase::done;
}

inline uint64_t mono_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline uint64_t ud(Op op, uint32_t gen, uint32_t slot) {
    return UserData{op, gen, slot}.pack();
}

inline Op recv_op(Side s) {
    return s == Side::client ? Op::recv_client : Op::recv_upstream;
}
inline Op send_op(Side s) {
    return s == Side::client ? Op::send_client : Op::send_upstream;
}
inline Op shutdown_op(Side s) {
    return s == Side::client ? Op::shutdown_client : Op::shutdown_upstream;
}
inline Op cancel_op(Side s) {
    return s == Side::client ? Op::cancel_client : Op::cancel_upstream;
}
inline Op splice_in_op(Side s) {
    return s == Side::client ? Op::splice_in_client : Op::splice_in_upstream;
}
inline Op splice_out_op(Side s) {
    return s == Side::client ? Op::splice_out_client : Op::splice_out_upstream;
}
}  // namespace tp::engine::worker_detail
