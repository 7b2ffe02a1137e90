// The metrics renderer against a golden file for a known state, and the counter aggregation
// across workers (ListenerCounterSet) that feeds it. TP_UPDATE_GOLDEN=1 rewrites the golden.
#include "engine/metrics.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "engine/listener_stats.h"

namespace tp::engine {
namespace {

ListenerSnapshot web_from_two_workers() {
    ListenerCounterSet set(2);
    ListenerCounters& w0 = set.of(0);
    ListenerCounters& w1 = set.of(1);
    ListenerCounters::add(w0.accepted, 5);
    ListenerCounters::add(w1.accepted, 3);
    ListenerCounters::add(w0.active, 1);
    ListenerCounters::add(w1.active, 1);
    ListenerCounters::add(w0.bytes_up, 1000);
    ListenerCounters::add(w1.bytes_up, 24);
    ListenerCounters::add(w0.bytes_down, 4096);
    ListenerCounters::add(w0.closed[static_cast<size_t>(CloseReason::client_eof)], 3);
    ListenerCounters::add(w1.closed[static_cast<size_t>(CloseReason::upstream_eof)], 1);
    ListenerCounters::add(w1.closed[static_cast<size_t>(CloseReason::connect_refused)], 1);
    ListenerCounters::add(w0.closed[static_cast<size_t>(CloseReason::idle_timeout)], 1);
    ListenerCounters::add(w1.connect_errors[connect_errno_slot(ECONNREFUSED)], 1);
    ListenerCounters::add(w0.connect_errors[connect_errno_slot(EIO)], 2);  // "other"
    ListenerCounters::add(w0.connect_time[connect_bucket(0)], 1);
    ListenerCounters::add(w0.connect_time[connect_bucket(150)], 2);
    ListenerCounters::add(w1.connect_time[connect_bucket(3'000)], 1);
    ListenerCounters::add(w1.connect_time[connect_bucket(100'000'000)], 1);
    ListenerCounters::add(w0.connect_time_sum_us, 300);
    ListenerCounters::add(w1.connect_time_sum_us, 100'003'000);
    ListenerCounters::add(w1.accept_paused_limit, 2);
    ListenerCounters::add(w0.accept_paused_fd, 1);
    return set.snapshot("web");
}

TEST(ListenerCounters, SumsEveryWorker) {
    ListenerSnapshot s = web_from_two_workers();
    EXPECT_EQ(s.name, "web");
    EXPECT_EQ(s.accepted, 8u);
    EXPECT_EQ(s.active, 2u);
    EXPECT_EQ(s.bytes_up, 1024u);
    EXPECT_EQ(s.closed_total(), 6u);
    EXPECT_EQ(s.accepted, s.active + s.closed_total());
    EXPECT_EQ(s.connect_errors[connect_errno_slot(ECONNREFUSED)], 1u);
    EXPECT_EQ(s.connect_errors[kConnectErrnoSlots - 1], 2u);
    EXPECT_EQ(s.connect_time[8], 2u);  // 150 us: 128 <= t < 256
    EXPECT_EQ(s.connect_time[kConnectBuckets - 1], 1u);
}

TEST(ConnectBuckets, Log2OfMicroseconds) {
    EXPECT_EQ(connect_bucket(0), 0u);
    EXPECT_EQ(connect_bucket(1), 1u);
    EXPECT_EQ(connect_bucket(2), 2u);
    EXPECT_EQ(connect_bucket(3), 2u);
    EXPECT_EQ(connect_bucket(4), 3u);
    EXPECT_EQ(connect_bucket(uint64_t{1} << 40), kConnectBuckets - 1);
    EXPECT_STREQ(connect_errno_name(connect_errno_slot(ECONNREFUSED)), "ECONNREFUSED");
    EXPECT_STREQ(connect_errno_name(connect_errno_slot(EIO)), "other");
}

TEST(CloseReasons, EveryOneHasAName) {
    for (size_t i = 0; i < kCloseReasons; ++i) {
        EXPECT_STRNE(close_reason_name(static_cast<CloseReason>(i)), "?") << i;
    }
}

MetricsInput known_state() {
    MetricsInput in;
    in.version = "1.2.3";
    in.ring_mode = "defer";
    in.workers = 2;
    in.start_time_unix = 1'700'000'000.5;
    in.reloads_ok = 2;
    in.reloads_failed = 1;
    in.last_reload_success_unix = 1'700'000'100;
    in.log_records_dropped = 7;
    StatsSnapshot& st = in.stats;
    StatsSnapshot w0, w1;
    w0.accepted = 5;
    w0.active = 1;
    w0.buffer_grows = 1;
    w0.buffers = 64;
    w1.accepted = 3;
    w1.active = 1;
    w1.buffer_starved = 4;
    w1.buffers = 32;
    st.per_worker = {w0, w1};
    st.udp.flows_created = 9;
    st.udp.flows_active = 2;
    st.udp.dgrams_up = 40;
    st.udp.dgrams_down = 38;
    st.udp.bytes_up = 4000;
    st.udp.bytes_down = 9000;
    st.udp.ended[static_cast<size_t>(UdpEnd::dns_answered)] = 7;
    st.udp.dropped[static_cast<size_t>(UdpDrop::oversize)] = 1;
    st.udp.reply_sockets = 3;
    st.udp.gso_sends = 5;
    st.udp.gso_dgrams = 17;
    st.udp.gro_recvs = 2;
    st.listeners.push_back(web_from_two_workers());
    ListenerSnapshot quoted;
    quoted.name = "odd\"name\\x";
    st.listeners.push_back(quoted);
    ListenerSnapshot dns;  // a UDP listener: its flows are exported, a TCP one's are not
    dns.name = "dns";
    dns.udp = true;
    dns.udp_flows = 9;
    dns.udp_active = 2;
    st.listeners.push_back(dns);
    in.rules = {{"lan-web", 120, 9000}, {"private", 3, 180}};
    return in;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

TEST(Metrics, RendersKnownStateAsGolden) {
    std::string got = render_prometheus(known_state());
    std::string path = std::string(TP_GOLDEN_DIR) + "/metrics.prom";
    if (std::getenv("TP_UPDATE_GOLDEN")) {
        std::ofstream(path) << got;
    }
    EXPECT_EQ(got, read_file(path)) << "regenerate with TP_UPDATE_GOLDEN=1 if intended";
}

TEST(Metrics, UdpFlowsPerListenerServingUdp) {
    std::string got = render_prometheus(known_state());
    EXPECT_NE(got.find("tpengine_udp_flows_created_total{listener=\"dns\"} 9\n"),
              std::string::npos);
    EXPECT_NE(got.find("tpengine_udp_flows_active{listener=\"dns\"} 2\n"), std::string::npos);
    EXPECT_EQ(got.find("tpengine_udp_flows_created_total{listener=\"web\"}"), std::string::npos);
}

TEST(Metrics, EveryFamilyHasHelpAndType) {
    std::string got = render_prometheus(known_state());
    for (const std::string& f : metric_families()) {
        EXPECT_NE(got.find("# HELP " + f + " "), std::string::npos) << f;
        EXPECT_NE(got.find("# TYPE " + f + " "), std::string::npos) << f;
    }
    EXPECT_NE(got.find("tpengine_connections_accepted_total{listener=\"web\"} 8\n"),
              std::string::npos);
    EXPECT_NE(got.find("listener=\"odd\\\"name\\\\x\""), std::string::npos);
}

}  // namespace
}  // namespace tp::engine
