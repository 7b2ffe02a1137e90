#pragma once
// The Prometheus text exposition (format 0.0.4) of tpengine's counters: a pure function of a
// plain snapshot, so the control thread renders it and tests check it byte for byte.

#include <cstdint>
#include <string>
#include <vector>

#include "engine/stats.h"

namespace tp::engine {

// One nft rule's own counter (read by the control thread from the kernel, never by workers).
struct RuleCounter {
    std::string name;
    uint64_t packets = 0;
    uint64_t bytes = 0;
};

struct MetricsInput {
    StatsSnapshot stats;
    std::vector<RuleCounter> rules;  // empty when no rules are applied
    std::string version;
    std::string ring_mode;
    unsigned workers = 0;
    double start_time_unix = 0;
    uint64_t reloads_ok = 0;
    uint64_t reloads_failed = 0;
    double last_reload_success_unix = 0;  // 0: never reloaded (the start counts as one)
    uint64_t log_records_dropped = 0;     // close records a full queue could not take
};

std::string render_prometheus(const MetricsInput& in);

// Every metric family render_prometheus() can emit (tests check dashboards against it).
std::vector<std::string> metric_families();

}  // namespace tp::engine
