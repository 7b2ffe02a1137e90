// Renders MetricsInput as Prometheus text: # HELP and # TYPE once per family, conventional
// names (_total for counters, _seconds for times), label values escaped.
#include "engine/metrics.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace tp::engine {
namespace {

struct Family {
    const char* name;
    const char* type;
    const char* help;
};

constexpr Family kFamilies[] = {
    {"tpengine_build_info", "gauge", "Version and io_uring mode of the running tpengine."},
    {"tpengine_start_time_seconds", "gauge", "Start time of the process, Unix seconds."},
    {"tpengine_workers", "gauge", "Worker threads."},
    {"tpengine_connections_accepted_total", "counter", "Connections accepted per listener."},
    {"tpengine_connections_active", "gauge", "Connections open now per listener."},
    {"tpengine_connections_closed_total", "counter", "Connections closed per listener and cause."},
    {"tpengine_bytes_total", "counter",
     "Bytes relayed per listener; direction up is client to upstream, down the reverse."},
    {"tpengine_connect_errors_total", "counter",
     "Upstream connects that failed, per listener and errno."},
    {"tpengine_connect_duration_seconds", "histogram",
     "Time from connect request to established upstream connection."},
    {"tpengine_handshake_failures_total", "counter",
     "Protocol handshakes that failed per listener."},
    {"tpengine_accept_paused_total", "counter",
     "Times accepting paused per listener; reason limit (max_connections) or fd (out of "
     "descriptors or memory)."},
    {"tpengine_worker_connections_accepted_total", "counter", "Connections accepted per worker."},
    {"tpengine_worker_connections_active", "gauge", "Connections open now per worker."},
    {"tpengine_buffer_ring_grows_total", "counter",
     "Chunks added to a worker's provided-buffer ring."},
    {"tpengine_buffer_ring_starved_total", "counter",
     "Receives that waited because a worker's buffer ring was empty."},
    {"tpengine_buffer_ring_buffers", "gauge", "Buffers provided in a worker's ring now."},
    {"tpengine_reloads_total", "counter", "Configuration reloads per result."},
    {"tpengine_last_reload_success_timestamp_seconds", "gauge",
     "Time of the last successful (re)load, Unix seconds."},
    {"tpengine_log_records_dropped_total", "counter",
     "Connection close records dropped because the log queue was full."},
    {"tpengine_udp_flows_created_total", "counter", "UDP flows created per listener."},
    {"tpengine_udp_flows_active", "gauge", "UDP flows open now per listener."},
    {"tpengine_udp_datagrams_total", "counter",
     "UDP datagrams relayed; direction up is client to upstream."},
    {"tpengine_udp_bytes_total", "counter", "UDP payload bytes relayed per direction."},
    {"tpengine_udp_flows_ended_total", "counter", "UDP flows ended per reason."},
    {"tpengine_udp_datagrams_dropped_total", "counter", "UDP datagrams dropped per reason."},
    {"tpengine_udp_reply_sockets", "gauge",
     "Transparent reply sockets open now (bound to original destinations, cached)."},
    {"tpengine_udp_gso_sends_total", "counter",
     "UDP sends that carried several datagrams (UDP_SEGMENT)."},
    {"tpengine_udp_gso_datagrams_total", "counter", "The datagrams those sends carried."},
    {"tpengine_udp_gro_receives_total", "counter",
     "UDP receives that carried several datagrams (UDP_GRO)."},
    {"tpengine_udp_socks_flows_total", "counter",
     "UDP flows relayed through a SOCKS5 UDP ASSOCIATE."},
    {"tpengine_udp_socks_failures_total", "counter",
     "SOCKS5 UDP associations that could not be set up, per cause."},
    {"tpengine_rule_packets_total", "counter", "Packets matched per nftables rule."},
    {"tpengine_rule_bytes_total", "counter", "Bytes matched per nftables rule."},
};

std::string escape(const std::string& v) {
    std::string out;
    for (char ch : v) {
        if (ch == '\\') {
            out += "\\\\";
        } else if (ch == '"') {
            out += "\\\"";
        } else if (ch == '\n') {
            out += "\\n";
        } else {
            out += ch;
        }
    }
    return out;
}

class Writer {
  public:
    void head(const char* name) {
        for (const Family& f : kFamilies) {
            if (std::string(f.name) == name) {
                out_ += "# HELP ";
                out_ += f.name;
                out_ += ' ';
                out_ += f.help;
                out_ += "\n# TYPE ";
                out_ += f.name;
                out_ += ' ';
                out_ += f.type;
                out_ += '\n';
                return;
            }
        }
    }
    // labels: "k1", "v1", "k2", "v2"... (values escaped here)
    void sample(const std::string& name, std::initializer_list<std::string> labels, uint64_t v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%" PRIu64, v);
        line(name, labels, buf);
    }
    void sample_f(const std::string& name, std::initializer_list<std::string> labels, double v) {
        char buf[48];
        std::snprintf(buf, sizeof buf, "%.6f", v);  // seconds: microseconds are exact
        line(name, labels, buf);
    }
    std::string take() { return std::move(out_); }

  private:
    void line(const std::string& name, std::initializer_list<std::string> labels,
              const char* value) {
        out_ += name;
        if (labels.size() > 0) {
            out_ += '{';
            bool key = true;
            bool first = true;
            for (const std::string& s : labels) {
                if (key) {
                    if (!first) {
                        out_ += ',';
                    }
                    out_ += s;
                    out_ += "=\"";
                } else {
                    out_ += escape(s);
                    out_ += '"';
                }
                key = !key;
                first = false;
            }
            out_ += '}';
        }
        out_ += ' ';
        out_ += value;
        out_ += '\n';
    }
    std::string out_;
};

}  // namespace

std::vector<std::string> metric_families() {
    std::vector<std::string> out;
    for (const Family& f : kFamilies) {
        out.push_back(f.name);
    }
    return out;
}

std::string render_prometheus(const MetricsInput& in) {
    Writer w;
    const StatsSnapshot& st = in.stats;
    const auto& ls = st.listeners;
    w.head("tpengine_build_info");
    w.sample("tpengine_build_info", {"version", in.version, "ring_mode", in.ring_mode}, 1);
    w.head("tpengine_start_time_seconds");
    w.sample_f("tpengine_start_time_seconds", {}, in.start_time_unix);
    w.head("tpengine_workers");
    w.sample("tpengine_workers", {}, in.workers);

    w.head("tpengine_connections_accepted_total");
    for (const auto& l : ls) {
        w.sample("tpengine_connections_accepted_total", {"listener", l.name}, l.accepted);
    }
    w.head("tpengine_connections_active");
    for (const auto& l : ls) {
        w.sample("tpengine_connections_active", {"listener", l.name}, l.active);
    }
    w.head("tpengine_connections_closed_total");
    for (const auto& l : ls) {
        for (size_t i = 0; i < kCloseReasons; ++i) {
            w.sample("tpengine_connections_closed_total",
                     {"listener", l.name, "cause", close_reason_name(static_cast<CloseReason>(i))},
                     l.closed[i]);
        }
    }
    w.head("tpengine_bytes_total");
    for (const auto& l : ls) {
        w.sample("tpengine_bytes_total", {"listener", l.name, "direction", "up"}, l.bytes_up);
        w.sample("tpengine_bytes_total", {"listener", l.name, "direction", "down"}, l.bytes_down);
    }
    w.head("tpengine_connect_errors_total");
    for (const auto& l : ls) {
        for (size_t i = 0; i < kConnectErrnoSlots; ++i) {
            w.sample("tpengine_connect_errors_total",
                     {"listener", l.name, "errno", connect_errno_name(i)}, l.connect_errors[i]);
        }
    }
    w.head("tpengine_connect_duration_seconds");
    for (const auto& l : ls) {
        uint64_t cum = 0;
        for (size_t i = 0; i < kConnectBuckets; ++i) {
            cum += l.connect_time[i];
            if (i + 1 < kConnectBuckets) {
                char le[32];
                std::snprintf(le, sizeof le, "%.9g", static_cast<double>(uint64_t{1} << i) / 1e6);
                w.sample("tpengine_connect_duration_seconds_bucket", {"listener", l.name, "le", le},
                         cum);
            } else {
                w.sample("tpengine_connect_duration_seconds_bucket",
                         {"listener", l.name, "le", "+Inf"}, cum);
            }
        }
        w.sample_f("tpengine_connect_duration_seconds_sum", {"listener", l.name},
                   static_cast<double>(l.connect_time_sum_us) / 1e6);
        w.sample("tpengine_connect_duration_seconds_count", {"listener", l.name}, cum);
    }
    w.head("tpengine_handshake_failures_total");
    for (const auto& l : ls) {
        w.sample("tpengine_handshake_failures_total", {"listener", l.name}, l.handshake_failures);
    }
    w.head("tpengine_accept_paused_total");
    for (const auto& l : ls) {
        w.sample("tpengine_accept_paused_total", {"listener", l.name, "reason", "limit"},
                 l.accept_paused_limit);
        w.sample("tpengine_accept_paused_total", {"listener", l.name, "reason", "fd"},
                 l.accept_paused_fd);
    }

    struct PerWorker {
        const char* name;
        uint64_t StatsSnapshot::*field;
    };
    const PerWorker per_worker[] = {
        {"tpengine_worker_connections_accepted_total", &StatsSnapshot::accepted},
        {"tpengine_worker_connections_active", &StatsSnapshot::active},
        {"tpengine_buffer_ring_grows_total", &StatsSnapshot::buffer_grows},
        {"tpengine_buffer_ring_starved_total", &StatsSnapshot::buffer_starved},
        {"tpengine_buffer_ring_buffers", &StatsSnapshot::buffers},
    };
    for (const PerWorker& pw : per_worker) {
        w.head(pw.name);
        for (size_t i = 0; i < st.per_worker.size(); ++i) {
            w.sample(pw.name, {"worker", std::to_string(i)}, st.per_worker[i].*pw.field);
        }
    }

    w.head("tpengine_reloads_total");
    w.sample("tpengine_reloads_total", {"result", "ok"}, in.reloads_ok);
    w.sample("tpengine_reloads_total", {"result", "failed"}, in.reloads_failed);
    w.head("tpengine_last_reload_success_timestamp_seconds");
    w.sample_f("tpengine_last_reload_success_timestamp_seconds", {}, in.last_reload_success_unix);
    w.head("tpengine_log_records_dropped_total");
    w.sample("tpengine_log_records_dropped_total", {}, in.log_records_dropped);

    const UdpSnapshot& u = st.udp;
    // Flows per listener (those serving UDP); the totals are their sums.
    w.head("tpengine_udp_flows_created_total");
    for (const auto& l : ls) {
        if (l.udp) {
            w.sample("tpengine_udp_flows_created_total", {"listener", l.name}, l.udp_flows);
        }
    }
    w.head("tpengine_udp_flows_active");
    for (const auto& l : ls) {
        if (l.udp) {
            w.sample("tpengine_udp_flows_active", {"listener", l.name}, l.udp_active);
        }
    }
    w.head("tpengine_udp_datagrams_total");
    w.sample("tpengine_udp_datagrams_total", {"direction", "up"}, u.dgrams_up);
    w.sample("tpengine_udp_datagrams_total", {"direction", "down"}, u.dgrams_down);
    w.head("tpengine_udp_bytes_total");
    w.sample("tpengine_udp_bytes_total", {"direction", "up"}, u.bytes_up);
    w.sample("tpengine_udp_bytes_total", {"direction", "down"}, u.bytes_down);
    w.head("tpengine_udp_flows_ended_total");
    for (size_t i = 0; i < u.ended.size(); ++i) {
        w.sample("tpengine_udp_flows_ended_total", {"reason", udp_end_name(static_cast<UdpEnd>(i))},
                 u.ended[i]);
    }
    w.head("tpengine_udp_datagrams_dropped_total");
    for (size_t i = 0; i < u.dropped.size(); ++i) {
        w.sample("tpengine_udp_datagrams_dropped_total",
                 {"reason", udp_drop_name(static_cast<UdpDrop>(i))}, u.dropped[i]);
    }
    w.head("tpengine_udp_reply_sockets");
    w.sample("tpengine_udp_reply_sockets", {}, u.reply_sockets);
    w.head("tpengine_udp_gso_sends_total");
    w.sample("tpengine_udp_gso_sends_total", {}, u.gso_sends);
    w.head("tpengine_udp_gso_datagrams_total");
    w.sample("tpengine_udp_gso_datagrams_total", {}, u.gso_dgrams);
    w.head("tpengine_udp_gro_receives_total");
    w.sample("tpengine_udp_gro_receives_total", {}, u.gro_recvs);
    w.head("tpengine_udp_socks_flows_total");
    w.sample("tpengine_udp_socks_flows_total", {}, u.socks_flows);
    w.head("tpengine_udp_socks_failures_total");
    w.sample("tpengine_udp_socks_failures_total", {"cause", "connect"}, u.socks_connect_failed);
    for (size_t i = 1; i < u.socks_failed.size(); ++i) {  // 0 is Cause::none
        const char* cause = hs::cause_name(static_cast<hs::Cause>(i));
        if (std::strncmp(cause, "http", 4) == 0) {
            continue;  // HTTP CONNECT never carries UDP
        }
        w.sample("tpengine_udp_socks_failures_total", {"cause", cause}, u.socks_failed[i]);
    }
    w.head("tpengine_rule_packets_total");
    for (const auto& r : in.rules) {
        w.sample("tpengine_rule_packets_total", {"rule", r.name}, r.packets);
    }
    w.head("tpengine_rule_bytes_total");
    for (const auto& r : in.rules) {
        w.sample("tpengine_rule_bytes_total", {"rule", r.name}, r.bytes);
    }
    return w.take();
}

}  // namespace tp::engine
