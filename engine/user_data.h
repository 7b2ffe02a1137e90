#pragma once
// The 64-bit io_uring user_data of every request: operation (8 bits) | generation (24 bits) |
// slot (32 bits). A completion whose generation no longer matches its slot is stale.

#include <cstdint>

namespace tp::engine {

enum class Op : uint8_t {
    none = 0,
    accept,   // slot = listener index, gen = listener generation
    connect,  // slot = connection
    recv_client,
    recv_upstream,
    send_client,
    send_upstream,
    shutdown_client,
    shutdown_upstream,
    cancel_client,
    cancel_upstream,
    watch_client,      // poll for an error/hangup on the client while connecting
    splice_in_client,  // bulk direction: POLLIN on the source, then splice into the pipe
    splice_in_upstream,
    splice_out_client,  // bulk direction: POLLOUT on the destination, then splice out
    splice_out_upstream,
    tick,    // the worker's timer wheel tick
    wake,    // eventfd read: commands from other threads
    ignore,  // requests whose completion needs no handling (accept cancel, ...)
    sniff,   // local: look at a sniffing connection's first bytes (res 1: decide now)
    // UDP (engine/udp_flows.cc)
    udp_listen,    // multishot recvmsg on a UDP listener: slot = UDP listener index
    udp_upstream,  // multishot recvmsg on a flow's upstream socket: slot = flow id
    udp_send,      // sendmsg of one datagram: slot = the UDP buffer id it was received into
    udp_socks,     // poll on a SOCKS5 UDP association's control connection: slot = flow id
};

struct UserData {
    Op op = Op::none;
    uint32_t gen = 0;  // 24 bits used
    uint32_t slot = 0;

    static constexpr uint32_t gen_mask = 0xFFFFFF;

    uint64_t pack() const {
        return (static_cast<uint64_t>(op) << 56) | (static_cast<uint64_t>(gen & gen_mask) << 32) |
               slot;
    }
    static UserData unpack(uint64_t v) {
        UserData u;
        u.op = static_cast<Op>(v >> 56);
        u.gen = static_cast<uint32_t>(v >> 32) & gen_mask;
        u.slot = static_cast<uint32_t>(v);
        return u;
    }
};

}  // namespace tp::engine
