#pragma once
// UDP socket set-up outside the ring: per-worker listening sockets, per-flow upstream sockets
// and the transparent reply sockets bound to an original destination.

#include "config/plan.h"
#include "engine/result.h"
#include "engine/unique_fd.h"

namespace tp::engine {

// Receive buffer asked for on listeners and upstream sockets: bursts wait in the kernel, not
// dropped, while the worker is busy (SO_RCVBUFFORCE when allowed, else capped by rmem_max).
constexpr int kUdpRcvBuf = 4 << 20;

// A bound SO_REUSEPORT UDP socket for one worker; transparent listeners also get
// IP(V6)_TRANSPARENT and IP(V6)_RECVORIGDSTADDR.
Result<UniqueFd> make_udp_listener(const plan::Listener& l);

// An unconnected upstream socket of `family`: SO_MARK, IP_PMTUDISC_DO, IP_RECVERR (ICMP errors
// end the flow), non-blocking, and the client's address (and port) bound for those sources.
Result<UniqueFd> make_udp_upstream(int family, plan::SourceMode source,
                                   const plan::SockAddr& client, uint32_t mark);

// An unconnected transparent socket bound to `local` (SO_REUSEADDR, SO_MARK): datagrams sent
// from it appear to come from `local`. Never read (see docs: the nft divert stays TCP-only).
Result<UniqueFd> make_udp_reply(const plan::SockAddr& local, uint32_t mark);

// A send-only raw socket (IPPROTO_RAW: the caller writes the IP and UDP headers, nothing is ever
// received on it) with SO_MARK: the reply path of last resort when a local service holds the
// original destination's port without SO_REUSEADDR, so no UDP socket can be bound to it.
Result<UniqueFd> make_udp_raw(int family, uint32_t mark);

// Sends one UDP datagram `from` -> `to` (same family) through raw socket `fd`, headers built
// here (UDP checksum included). Returns bytes sent or -errno.
int send_udp_raw(int fd, const sockaddr* from, const sockaddr* to, const void* payload,
                 uint32_t len);

}  // namespace tp::engine
