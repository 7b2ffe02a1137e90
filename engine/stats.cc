#include "engine/stats.h"

#include <cstdio>

namespace tp::engine {

const char* close_cause_name(CloseCause c) {
    switch (c) {
        case CloseCause::normal:
            return "normal";
        case CloseCause::client_reset:
            return "client_reset";
        case CloseCause::upstream_reset:
            return "upstream_reset";
        case CloseCause::connect_failed:
            return "connect_failed";
        case CloseCause::connect_timeout:
            return "connect_timeout";
        case CloseCause::idle_timeout:
            return "idle_timeout";
        case CloseCause::half_closed_timeout:
            return "half_closed_timeout";
        case CloseCause::self_connect:
            return "self_connect";
        case CloseCause::no_origdst:
            return "no_origdst";
        case CloseCause::error:
            return "error";
        case CloseCause::shutdown:
            return "shutdown";
        case CloseCause::handshake_failed:
            return "handshake_failed";
        case CloseCause::handshake_timeout:
            return "handshake_timeout";
        case CloseCause::rejected:
            return "rejected";
        case CloseCause::bad_proxy_header:
            return "bad_proxy_header";
        case CloseCause::count_:
            break;
    }
    return "?";
}

const char* udp_end_name(UdpEnd e) {
    switch (e) {
        case UdpEnd::expired:
            return "expired";
        case UdpEnd::evicted:
            return "evicted";
        case UdpEnd::dns_answered:
            return "dns_answered";
        case UdpEnd::icmp:
            return "icmp";
        case UdpEnd::error:
            return "error";
        case UdpEnd::shutdown:
            return "shutdown";
        case UdpEnd::socks_closed:
            return "socks_closed";
        case UdpEnd::socks_failed:
            return "socks_failed";
        case UdpEnd::count_:
            break;
    }
    return "?";
}

const char* udp_drop_name(UdpDrop d) {
    switch (d) {
        case UdpDrop::oversize:
            return "oversize";
        case UdpDrop::no_origdst:
            return "no_origdst";
        case UdpDrop::self:
            return "self";
        case UdpDrop::shed:
            return "shed";
        case UdpDrop::emsgsize:
            return "emsgsize";
        case UdpDrop::send_failed:
            return "send_failed";
        case UdpDrop::reply_socket:
            return "reply_socket";
        case UdpDrop::no_flow:
            return "no_flow";
        case UdpDrop::rejected:
            return "rejected";
        case UdpDrop::socks_queue:
            return "socks_queue";
        case UdpDrop::socks_fragment:
            return "socks_fragment";
        case UdpDrop::socks_malformed:
            return "socks_malformed";
        case UdpDrop::count_:
            break;
    }
    return "?";
}

uint64_t UdpSnapshot::ended_total() const {
    uint64_t n = 0;
    for (uint64_t c : ended)
        n += c;
    return n;
}

uint64_t UdpSnapshot::dropped_total() const {
    uint64_t n = 0;
    for (uint64_t c : dropped)
        n += c;
    return n;
}

void UdpSnapshot::add(const UdpSnapshot& o) {
    flows_created += o.flows_created;
    flows_active += o.flows_active;
    flows_shed += o.flows_shed;
    dgrams_up += o.dgrams_up;
    dgrams_down += o.dgrams_down;
    bytes_up += o.bytes_up;
    bytes_down += o.bytes_down;
    reply_sockets += o.reply_sockets;
    gso_sends += o.gso_sends;
    gso_dgrams += o.gso_dgrams;
    gro_recvs += o.gro_recvs;
    for (size_t i = 0; i < ended.size(); ++i)
        ended[i] += o.ended[i];
    for (size_t i = 0; i < dropped.size(); ++i)
        dropped[i] += o.dropped[i];
    socks_flows += o.socks_flows;
    socks_connect_failed += o.socks_connect_failed;
    for (size_t i = 0; i < socks_failed.size(); ++i)
        socks_failed[i] += o.socks_failed[i];
}

const char* close_reason_name(CloseReason r) {
    static const char* const names[kCloseReasons] = {"client_eof",
                                                     "upstream_eof",
                                                     "client_reset",
                                                     "upstream_reset",
                                                     "connect_refused",
                                                     "connect_failed",
                                                     "connect_timeout",
                                                     "idle_timeout",
                                                     "half_closed_timeout",
                                                     "loop_refused",
                                                     "no_origdst",
                                                     "limit",
                                                     "error",
                                                     "shutdown",
                                                     "handshake_failed",
                                                     "handshake_timeout",
                                                     "rejected",
                                                     "bad_proxy_header"};
    size_t i = static_cast<size_t>(r);
    return i < kCloseReasons ? names[i] : "?";
}

size_t connect_errno_slot(int err) {
    for (size_t i = 0; i + 1 < kConnectErrnoSlots; ++i) {
        if (kConnectErrnos[i] == err) {
            return i;
        }
    }
    return kConnectErrnoSlots - 1;
}

const char* connect_errno_name(size_t slot) {
    switch (slot < kConnectErrnoSlots - 1 ? kConnectErrnos[slot] : 0) {
        case ECONNREFUSED:
            return "ECONNREFUSED";
        case ETIMEDOUT:
            return "ETIMEDOUT";
        case EHOSTUNREACH:
            return "EHOSTUNREACH";
        case ENETUNREACH:
            return "ENETUNREACH";
        case ECONNRESET:
            return "ECONNRESET";
        case EACCES:
            return "EACCES";
        case EPERM:
            return "EPERM";
        case EADDRNOTAVAIL:
            return "EADDRNOTAVAIL";
        case EADDRINUSE:
            return "EADDRINUSE";
        case EAFNOSUPPORT:
            return "EAFNOSUPPORT";
        default:
            return "other";
    }
}

size_t connect_bucket(uint64_t us) {
    size_t b = 0;
    while (b + 1 < kConnectBuckets && us >= (uint64_t{1} << b)) {
        ++b;
    }
    return b;
}

uint64_t ListenerSnapshot::closed_total() const {
    uint64_t n = 0;
    for (uint64_t c : closed)
        n += c;
    return n;
}

uint64_t StatsSnapshot::closed_total() const {
    uint64_t n = 0;
    for (uint64_t c : closed)
        n += c;
    return n;
}

namespace {
void append_block(std::string& out, const char* title, const StatsSnapshot& s) {
    char line[512];  // the udp line alone can pass 256 with large counters
    std::snprintf(line, sizeof line,
                  "%s: accepted=%llu active=%llu closed=%llu bytes_up=%llu bytes_down=%llu "
                  "accept_paused=%llu\n",
                  title, static_cast<unsigned long long>(s.accepted),
                  static_cast<unsigned long long>(s.active),
                  static_cast<unsigned long long>(s.closed_total()),
                  static_cast<unsigned long long>(s.bytes_up),
                  static_cast<unsigned long long>(s.bytes_down),
                  static_cast<unsigned long long>(s.accept_paused));
    out += line;
    bool any = false;
    for (size_t i = 0; i < s.closed.size(); ++i) {
        if (s.closed[i] == 0)
            continue;
        std::snprintf(line, sizeof line, "%s%s=%llu",
                      any ? " " : "  closed_by: ", close_cause_name(static_cast<CloseCause>(i)),
                      static_cast<unsigned long long>(s.closed[i]));
        out += line;
        any = true;
    }
    if (any)
        out += '\n';
    any = false;
    for (size_t i = 0; i < s.handshake.size(); ++i) {
        if (s.handshake[i] == 0)
            continue;
        std::snprintf(line, sizeof line, "%s%s=%llu", any ? " " : "  handshake_failed_by: ",
                      hs::cause_name(static_cast<hs::Cause>(i)),
                      static_cast<unsigned long long>(s.handshake[i]));
        out += line;
        any = true;
    }
    if (any)
        out += '\n';
    if (s.stale_dropped != 0 || s.mem_paused != 0 || s.mem_refused != 0) {
        std::snprintf(line, sizeof line,
                      "  shed: stale_dropped=%llu mem_paused=%llu mem_refused=%llu\n",
                      static_cast<unsigned long long>(s.stale_dropped),
                      static_cast<unsigned long long>(s.mem_paused),
                      static_cast<unsigned long long>(s.mem_refused));
        out += line;
    }
    const UdpSnapshot& u = s.udp;
    if (!u.any())
        return;  // TCP-only engines print what they always printed
    using ull = unsigned long long;
    std::snprintf(line, sizeof line,
                  "  udp: flows_created=%llu flows_active=%llu expired=%llu evicted=%llu "
                  "shed=%llu dgrams_up=%llu dgrams_down=%llu bytes_up=%llu bytes_down=%llu "
                  "reply_sockets=%llu gso_sends=%llu gso_dgrams=%llu gro_recvs=%llu\n",
                  ull(u.flows_created), ull(u.flows_active),
                  ull(u.ended[static_cast<size_t>(UdpEnd::expired)]),
                  ull(u.ended[static_cast<size_t>(UdpEnd::evicted)]), ull(u.flows_shed),
                  ull(u.dgrams_up), ull(u.dgrams_down), ull(u.bytes_up), ull(u.bytes_down),
                  ull(u.reply_sockets), ull(u.gso_sends), ull(u.gso_dgrams), ull(u.gro_recvs));
    out += line;
    out += "  udp_ended_by:";
    for (size_t i = 0; i < u.ended.size(); ++i) {
        std::snprintf(line, sizeof line, " %s=%llu", udp_end_name(static_cast<UdpEnd>(i)),
                      ull(u.ended[i]));
        out += line;
    }
    out += "\n  udp_dropped:";
    for (size_t i = 0; i < u.dropped.size(); ++i) {
        std::snprintf(line, sizeof line, " %s=%llu", udp_drop_name(static_cast<UdpDrop>(i)),
                      ull(u.dropped[i]));
        out += line;
    }
    out += '\n';
    if (u.socks_flows != 0 || u.socks_connect_failed != 0) {
        std::snprintf(line, sizeof line, "  udp_socks: flows=%llu connect_failed=%llu",
                      ull(u.socks_flows), ull(u.socks_connect_failed));
        out += line;
        for (size_t i = 0; i < u.socks_failed.size(); ++i) {
            if (u.socks_failed[i] != 0) {
                std::snprintf(line, sizeof line, " %s=%llu",
                              hs::cause_name(static_cast<hs::Cause>(i)), ull(u.socks_failed[i]));
                out += line;
            }
        }
        out += '\n';
    }
}
}  // namespace

std::string StatsSnapshot::format() const {
    std::string out;
    append_block(out, "total", *this);
    for (size_t i = 0; i < per_worker.size(); ++i) {
        char title[32];
        std::snprintf(title, sizeof title, "worker %zu", i);
        append_block(out, title, per_worker[i]);
    }
    return out;
}

}  // namespace tp::engine
