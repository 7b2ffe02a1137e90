#pragma once
// Socket set-up outside the ring: listening sockets, the original destination of an accepted
// connection, upstream sockets (mark, transparent source bind, TCP options), and the test
// that refuses relaying a connection to one of tpengine's own listeners.

#include <netinet/in.h>

#include <string>
#include <vector>

#include "config/plan.h"
#include "engine/result.h"
#include "engine/unique_fd.h"

namespace tp::engine {

// A bound, listening SO_REUSEPORT socket for one worker.
Result<UniqueFd> make_listener(const plan::Listener& l);

// Reload: the settings of a listening socket that change without a new socket (fast_open,
// backlog), so its accept queue and the connections in it stay.
void update_listener(int fd, const plan::Listener& was, const plan::Listener& now);

// The original destination of accepted socket `fd`. False when it cannot be found.
bool original_destination(int fd, const plan::Listener& l, plan::SockAddr& out);
// The same, with the client address known (one getpeername fewer); an unset `peer` = unknown.
bool original_destination(int fd, const plan::Listener& l, plan::SockAddr& out,
                          const plan::SockAddr& peer);

// v4-mapped IPv6 (::ffff:a.b.c.d) becomes plain IPv4; everything else is copied.
plan::SockAddr unmap_v4(const plan::SockAddr& a);

// A socket for connecting to `target`, with SO_MARK, TCP_NODELAY, and the client's address
// (and port) bound when `source` asks for it. `client` may be unset when source is proxy.
Result<UniqueFd> make_upstream(const plan::SockAddr& target, plan::SourceMode source,
                               const plan::SockAddr& client, uint32_t mark, bool fast_open);

void set_linger_reset(int fd);  // SO_LINGER {1, 0}: close() sends RST

// True when the client of accepted socket `fd` is already gone: it reset the connection, or
// it closed it without sending a byte. One non-blocking MSG_PEEK; used only where accepted
// sockets are likely stale (a backlog that waited out fd exhaustion or max_connections).
bool client_gone(int fd);

std::string format_addr(const plan::SockAddr& a);
plan::SockAddr peer_addr(int fd);
plan::SockAddr local_addr(int fd);

// The endpoints tpengine listens on, plus the host's local addresses (for wildcard listeners).
class SelfSet {
  public:
    void add_listener(const plan::SockAddr& a);
    void load_local_addresses();  // getifaddrs snapshot, plus 127.0.0.0/8 and ::1
    bool contains(const plan::SockAddr& dst) const;

  private:
    struct Ep {
        in6_addr addr;
        uint16_t port;  // network order
        bool wildcard;
    };
    bool is_local(const in6_addr& a) const;
    std::vector<Ep> listeners_;
    std::vector<in6_addr> locals_;
};

}  // namespace tp::engine
