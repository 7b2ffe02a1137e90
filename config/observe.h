#pragma once
// Observability settings from the rule set (`metrics:`, `control:`, `log:`): plain data for
// the front end (tools/tpengine), which runs the control thread and the log writer.

#include <string>

#include "config/plan.h"

namespace tp::config {

struct Observe {
    plan::SockAddr metrics;  // Prometheus endpoint; unset (len 0) = off
    std::string control_socket = "/run/tpengine/control.sock";  // "" = no control socket
    std::string control_group;          // socket mode 0660 with this group; "" = 0600
    std::string log_level = "info";     // error, warning, info, debug
    std::string log_format = "logfmt";  // close records: logfmt or json
    bool log_connections = false;       // one close record per connection
};

}  // namespace tp::config
