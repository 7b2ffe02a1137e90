// Tables and JSON for the client workloads (see report.h).

#include "tools/tpbench/report.h"

#include <algorithm>

namespace tp::bench {
namespace {

const char* direction_name(Direction d) {
    switch (d) {
        case Direction::Up:
            return "up";
        case Direction::Down:
            return "down";
        default:
            return "both";
    }
}

std::string errors_json(const ErrorCounts& e) {
    std::string s = "{";
    for (size_t i = 0; i < e.size(); ++i) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s\"%s\":%llu", i ? "," : "",
                      cause_name(static_cast<Cause>(i)), static_cast<unsigned long long>(e[i]));
        s += buf;
    }
    return s + "}";
}

std::string latency_json(const Histogram& h) {
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "{\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
                  "\"p999\":%.3f,\"max\":%.3f}",
                  h.min() / 1e3, h.mean() / 1e3, h.percentile(0.5) / 1e3, h.percentile(0.9) / 1e3,
                  h.percentile(0.99) / 1e3, h.percentile(0.999) / 1e3, h.max() / 1e3);
    return buf;
}

void latency_table(std::FILE* f, const Histogram& h) {
    std::fprintf(f, "  latency (us)    p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
                 h.percentile(0.5) / 1e3, h.percentile(0.9) / 1e3, h.percentile(0.99) / 1e3,
                 h.percentile(0.999) / 1e3, h.max() / 1e3);
}

}  // namespace

std::string errors_text(const ErrorCounts& e) {
    std::string s;
    for (size_t i = 0; i < e.size(); ++i) {
        if (e[i] == 0) {
            continue;
        }
        if (!s.empty()) {
            s += ", ";
        }
        s += std::string(cause_name(static_cast<Cause>(i))) + " " + std::to_string(e[i]);
    }
    return s.empty() ? "none" : s;
}

void print_throughput(std::FILE* f, const ReportContext& ctx, const ThroughputResult& r) {
    const ClientOptions& o = *ctx.opt;
    const double secs = r.elapsed_s > 0 ? r.elapsed_s : 1;
    const double up = static_cast<double>(r.bytes_sent) * 8 / secs / 1e9;
    const double down = static_cast<double>(r.bytes_received) * 8 / secs / 1e9;
    uint64_t lo = 0;
    uint64_t hi = 0;
    uint64_t sum = 0;
    if (!r.per_conn_bytes.empty()) {
        lo = *std::min_element(r.per_conn_bytes.begin(), r.per_conn_bytes.end());
        hi = *std::max_element(r.per_conn_bytes.begin(), r.per_conn_bytes.end());
        for (uint64_t b : r.per_conn_bytes) {
            sum += b;
        }
    }
    const double min_max = hi ? static_cast<double>(lo) / static_cast<double>(hi) : 0;
    const double mean = r.per_conn_bytes.empty() ? 0
                                                 : static_cast<double>(sum) /
                                                       static_cast<double>(r.per_conn_bytes.size());
    const double min_share = mean > 0 ? static_cast<double>(lo) / mean : 0;
    if (ctx.json) {
        std::fprintf(f,
                     "{\"mode\":\"throughput\",\"target\":\"%s\",\"connections\":%d,"
                     "\"connected\":%d,\"direction\":\"%s\",\"duration_s\":%.3f,"
                     "\"gbit_s\":%.4f,\"up_gbit_s\":%.4f,\"down_gbit_s\":%.4f,"
                     "\"bytes_sent\":%llu,\"bytes_received\":%llu,\"fairness_min_max\":%.4f,"
                     "\"fairness_min_share\":%.4f,\"errors\":%s,\"errors_total\":%llu}\n",
                     ctx.target.c_str(), o.connections, r.connected, direction_name(o.direction),
                     secs, up + down, up, down, static_cast<unsigned long long>(r.bytes_sent),
                     static_cast<unsigned long long>(r.bytes_received), min_max, min_share,
                     errors_json(r.errors).c_str(),
                     static_cast<unsigned long long>(total(r.errors)));
        return;
    }
    std::fprintf(f, "tpbench throughput  %s  %d/%d connections  %s  %.1f s\n", ctx.target.c_str(),
                 r.connected, o.connections, direction_name(o.direction), secs);
    std::fprintf(f, "  throughput      %.3f Gbit/s  (up %.3f, down %.3f)\n", up + down, up, down);
    std::fprintf(f, "  bytes           sent %llu  received %llu\n",
                 static_cast<unsigned long long>(r.bytes_sent),
                 static_cast<unsigned long long>(r.bytes_received));
    std::fprintf(f, "  fairness        min/max %.3f  min/mean %.3f\n", min_max, min_share);
    std::fprintf(f, "  errors          %s\n", errors_text(r.errors).c_str());
}

void print_rr(std::FILE* f, const ReportContext& ctx, const RrResult& r) {
    const ClientOptions& o = *ctx.opt;
    const double secs = r.elapsed_s > 0 ? r.elapsed_s : 1;
    const double rps = static_cast<double>(r.responses) / secs;
    if (ctx.json) {
        std::fprintf(f,
                     "{\"mode\":\"rr\",\"target\":\"%s\",\"connections\":%d,\"connected\":%d,"
                     "\"size\":%u,\"rate\":%.1f,\"duration_s\":%.3f,\"requests\":%llu,"
                     "\"responses\":%llu,\"bytes_sent\":%llu,\"bytes_received\":%llu,"
                     "\"requests_per_s\":%.1f,\"latency_us\":%s,\"errors\":%s,"
                     "\"errors_total\":%llu}\n",
                     ctx.target.c_str(), o.connections, r.connected, o.size, o.rate, secs,
                     static_cast<unsigned long long>(r.requests),
                     static_cast<unsigned long long>(r.responses),
                     static_cast<unsigned long long>(r.bytes_sent),
                     static_cast<unsigned long long>(r.bytes_received), rps,
                     latency_json(r.latency).c_str(), errors_json(r.errors).c_str(),
                     static_cast<unsigned long long>(total(r.errors)));
        return;
    }
    std::fprintf(f, "tpbench rr  %s  %d/%d connections  %u-byte exchanges  %.1f s%s\n",
                 ctx.target.c_str(), r.connected, o.connections, o.size, secs,
                 o.rate > 0 ? "  (fixed rate)" : "");
    std::fprintf(f, "  requests/s      %.0f  (%llu requests, %llu responses)\n", rps,
                 static_cast<unsigned long long>(r.requests),
                 static_cast<unsigned long long>(r.responses));
    latency_table(f, r.latency);
    std::fprintf(f, "  errors          %s\n", errors_text(r.errors).c_str());
}

void print_connrate(std::FILE* f, const ReportContext& ctx, const ConnrateResult& r) {
    const ClientOptions& o = *ctx.opt;
    const double secs = r.elapsed_s > 0 ? r.elapsed_s : 1;
    const double cps = static_cast<double>(r.ok) / secs;
    if (ctx.json) {
        std::fprintf(
            f,
            "{\"mode\":\"connrate\",\"target\":\"%s\",\"concurrency\":%d,\"size\":%u,"
            "\"duration_s\":%.3f,\"attempts\":%llu,\"ok\":%llu,\"bytes_sent\":%llu,"
            "\"bytes_received\":%llu,\"connections_per_s\":%.1f,\"latency_us\":%s,"
            "\"errors\":%s,\"errors_total\":%llu}\n",
            ctx.target.c_str(), o.connections, o.size, secs,
            static_cast<unsigned long long>(r.attempts), static_cast<unsigned long long>(r.ok),
            static_cast<unsigned long long>(r.bytes_sent),
            static_cast<unsigned long long>(r.bytes_received), cps, latency_json(r.latency).c_str(),
            errors_json(r.errors).c_str(), static_cast<unsigned long long>(total(r.errors)));
        return;
    }
    std::fprintf(f, "tpbench connrate  %s  concurrency %d  %u-byte exchange  %.1f s\n",
                 ctx.target.c_str(), o.connections, o.size, secs);
    std::fprintf(f, "  connections/s   %.0f  (%llu ok of %llu)\n", cps,
                 static_cast<unsigned long long>(r.ok),
                 static_cast<unsigned long long>(r.attempts));
    latency_table(f, r.latency);
    std::fprintf(f, "  errors          %s\n", errors_text(r.errors).c_str());
}

}  // namespace tp::bench
