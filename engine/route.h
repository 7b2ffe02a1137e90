#pragma once
// A listener's routes, ready for per-connection lookups: first match wins over the original
// destination, its port and (for sniffed connections) the domain name. Built once per listener
// set-up from the plan; lookups allocate nothing. A route's destination prefixes become sorted,
// merged address intervals per family, so a list of n prefixes costs O(log n) per lookup.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "config/plan.h"

namespace tp::engine {

// Whether `a` (v4-mapped seen as v4) is inside one of `list`.
bool in_prefixes(const std::vector<plan::Prefix>& list, const plan::SockAddr& a);

class RouteTable {
  public:
    static constexpr int no_match = -1;   // none matched: the listener's own upstream
    static constexpr int need_name = -2;  // a route before any match needs the sniffed name

    RouteTable() = default;
    explicit RouteTable(const plan::Listener& l);

    bool empty() const { return routes_.empty(); }
    bool wants_name() const { return wants_name_; }
    // `sniffed`: the name is known (`name` empty: none found). Returns a route index or one of
    // the constants above.
    int match(const plan::SockAddr& dst, bool sniffed, std::string_view name) const;

  private:
    using V4 = uint32_t;           // host order
    using V6 = unsigned __int128;  // host order
    struct R {
        bool has_dst = false;               // destinations given (either list may be empty)
        std::vector<std::pair<V4, V4>> v4;  // [first, last], sorted, disjoint, not adjacent
        std::vector<std::pair<V6, V6>> v6;
        std::vector<std::pair<uint16_t, uint16_t>> ports;
        std::unordered_set<std::string> exact;
        std::unordered_set<std::string> suffix;
        bool by_name = false;
    };
    static bool name_matches(const R& r, std::string_view name);
    std::vector<R> routes_;
    bool wants_name_ = false;
};

}  // namespace tp::engine
