#pragma once
// Printing results: a readable table by default, one JSON object with --json.

#include <cstdio>
#include <string>

#include "tools/tpbench/client.h"

namespace tp::bench {

struct ReportContext {
    std::string target;
    const ClientOptions* opt = nullptr;
    bool json = false;
};

void print_throughput(std::FILE* f, const ReportContext& ctx, const ThroughputResult& r);
void print_rr(std::FILE* f, const ReportContext& ctx, const RrResult& r);
void print_connrate(std::FILE* f, const ReportContext& ctx, const ConnrateResult& r);

// "refused 3, timeout 1" or "none".
std::string errors_text(const ErrorCounts& e);

}  // namespace tp::bench
