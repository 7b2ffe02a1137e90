#pragma once
// Policy routing over rtnetlink (libmnl): add, delete and list `ip rule` entries and the
// `local default dev lo table N` routes, for both families. No shelling out to `ip`.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/kernel_setup.h"

struct mnl_socket;

namespace tp::config {

// An `ip rule` as the kernel lists it (the fields tpengine cares about).
struct RuleEntry {
    int family = 0;
    uint32_t priority = 0;
    uint32_t table = 0;
    uint32_t action = 0;  // FR_ACT_*
    bool has_fwmark = false;
    uint32_t fwmark = 0;
    uint32_t fwmask = 0;
    std::string describe() const;  // close to `ip rule` output, for messages
};

// A route as the kernel lists it (the fields tpengine cares about).
struct RouteEntry {
    int family = 0;
    uint32_t table = 0;
    uint8_t type = 0;  // RTN_*
    uint8_t dst_len = 0;
    uint8_t protocol = 0;
    uint8_t scope = 0;
    uint32_t oif = 0;  // 0 = none
    uint32_t metric = 0;
    bool has_gateway = false;
    std::string dst;  // text form; "default" for dst_len 0
    std::string describe() const;
};

// Errors come back as a negative errno plus a sentence (with the kernel's extended ack
// message when it gave one).
struct NlError {
    int code = 0;  // -errno; 0 = success
    std::string message;
    bool ok() const { return code == 0; }
};

// One NETLINK_ROUTE socket. Not thread-safe; one per user.
class Rtnl {
  public:
    // Opens and binds the socket; nullptr (and `err`) on failure.
    static std::unique_ptr<Rtnl> open(std::string* err);
    ~Rtnl();
    Rtnl(const Rtnl&) = delete;
    Rtnl& operator=(const Rtnl&) = delete;

    NlError add_rule(const PolicyRule& rule);  // NLM_F_CREATE|NLM_F_EXCL
    NlError del_rule(const PolicyRule& rule);
    NlError add_route(const LocalRoute& route);  // NLM_F_CREATE|NLM_F_EXCL
    NlError del_route(const LocalRoute& route);
    NlError del_route_entry(const RouteEntry& route);  // exactly a listed route

    NlError list_rules(int family, std::vector<RuleEntry>* out);
    NlError list_routes(int family, std::vector<RouteEntry>* out);

    uint32_t loopback_index() const { return lo_index_; }

  private:
    Rtnl() = default;
    NlError request(void* nlh, const char* what);
    mnl_socket* sock_ = nullptr;
    uint32_t portid_ = 0;
    uint32_t seq_ = 0;
    uint32_t lo_index_ = 0;
};

// Is this listed rule / route one tpengine installs for `setup`?
bool is_our_rule(const RuleEntry& rule, const KernelSetup& setup);
bool is_our_route(const RouteEntry& route, const KernelSetup& setup, uint32_t lo_index);

// "ip -4 rule fwmark 0x1/0x1 lookup 100 priority 100" and "ip -6 route local default dev lo
// table 100": how journal steps and errors name an entry.
std::string describe(const PolicyRule& rule);
std::string describe(const LocalRoute& route);

}  // namespace tp::config
