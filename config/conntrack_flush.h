#pragma once
// Deleting the conntrack entries of UDP flows that the rules just installed intercept
// (ctnetlink over libmnl). A UDP flow that began before the rules keeps its conntrack entry,
// and with it any NAT the entry carries (a masquerade or dnat of the old path would then be
// applied to the relay's own packets of that 5-tuple, and nat rules only see new entries), for
// as long as the flow stays busy. Deleting the entry makes the next datagram start afresh.

#include <string>

#include "config/kernel_setup.h"

namespace tp::config {

struct ConntrackFlushResult {
    size_t seen = 0;     // UDP entries looked at
    size_t deleted = 0;  // entries the rules intercept, deleted
    std::string error;   // empty when the dump and every delete went through
};

// Dumps the UDP entries of both families and deletes those whose original direction is, in
// rule order, first matched by an intercepting rule (interfaces are not recorded by conntrack,
// so a rule that names interfaces matches on its addresses and ports alone).
ConntrackFlushResult flush_udp_conntrack(const KernelSetup& setup);

// The pure part, for tests: does an original-direction tuple fall to an intercepting rule?
bool udp_entry_intercepted(const KernelSetup& setup, const IpAddr& src, const IpAddr& dst,
                           uint16_t dport);

}  // namespace tp::config
