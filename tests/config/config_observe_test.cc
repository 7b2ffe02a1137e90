// The observability keys (metrics:, control:, log:): defaults, values, and rejections with
// their positions.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "config/load.h"

namespace tp::config {
namespace {

const char* kListener = "listeners:\n  - name: web\n    port: 50080\n";

std::string first_error(const std::string& yaml) {
    LoadResult r = load_config_text(yaml, "t.yaml");
    if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
        return d->empty() ? "(no message)" : d->front().format();
    }
    return "(accepted)";
}

Observe observe(const std::string& yaml) {
    LoadResult r = load_config_text(std::string(kListener) + yaml, "t.yaml");
    if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
        ADD_FAILURE() << "rejected: " << (d->empty() ? "" : d->front().format());
        return {};
    }
    return std::get<LoadedConfig>(r).observe;
}

TEST(ConfigObserve, Defaults) {
    Observe o = observe("");
    EXPECT_EQ(o.metrics.len, 0u);
    EXPECT_EQ(o.control_socket, "/run/tpengine/control.sock");
    EXPECT_EQ(o.control_group, "");
    EXPECT_EQ(o.log_level, "info");
    EXPECT_EQ(o.log_format, "logfmt");
    EXPECT_FALSE(o.log_connections);
}

TEST(ConfigObserve, Values) {
    Observe o = observe(
        "metrics: {listen: 127.0.0.1:9469}\ncontrol: {socket: /run/x/c.sock, group: adm}\n"
        "log: {level: debug, connections: true, format: json}\n");
    ASSERT_EQ(o.metrics.family(), AF_INET);
    EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&o.metrics.storage)->sin_port), 9469);
    EXPECT_EQ(o.control_socket, "/run/x/c.sock");
    EXPECT_EQ(o.control_group, "adm");
    EXPECT_EQ(o.log_level, "debug");
    EXPECT_EQ(o.log_format, "json");
    EXPECT_TRUE(o.log_connections);
    EXPECT_EQ(observe("control: {socket: off}\n").control_socket, "");
    EXPECT_EQ(observe("metrics: {listen: \"[::1]:9469\"}\n").metrics.family(), AF_INET6);
}

TEST(ConfigObserve, Rejections) {
    std::string l = kListener;
    EXPECT_EQ(first_error(l + "metrics: {listen: 9469}\n"),
              "t.yaml:4:19: metrics.listen: \"9469\" needs a port: HOST:PORT or [IPV6]:PORT");
    EXPECT_EQ(first_error(l + "metrics: {port: 1}\n"),
              "t.yaml:4:11: metrics.port: unknown key \"port\" (allowed here: listen)");
    EXPECT_EQ(first_error(l + "control: {socket: run/c.sock}\n"),
              "t.yaml:4:19: control.socket: expected an absolute path of at most 100 bytes or off");
    EXPECT_EQ(first_error(l + "log: {level: verbose}\n"),
              "t.yaml:4:14: log.level: \"verbose\" is not one of: error | warning | info | debug");
    EXPECT_EQ(first_error(l + "log: {format: xml}\n"),
              "t.yaml:4:15: log.format: \"xml\" is not one of: logfmt | json");
}

}  // namespace
}  // namespace tp::config
