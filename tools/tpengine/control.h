#pragma once
// The control thread: serves the Prometheus endpoint (HTTP/1.0 GET /metrics) and the control
// socket that `tpengine ctl` talks to. It never touches a worker's data except through the
// engine's summed counters and its command queue, so the hot path pays nothing for it.

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/plan.h"
#include "engine/engine.h"
#include "engine/metrics.h"
#include "engine/unique_fd.h"
#include "tools/tpengine/serve.h"

namespace tp::tools {

struct ControlOptions {
    plan::SockAddr metrics;    // unset = no metrics endpoint
    std::string socket_path;   // "" = no control socket
    std::string socket_group;  // "" = mode 0600; else 0660 and this group
    std::function<std::vector<engine::RuleCounter>()> rules;  // absent: no rule counters
};

class ControlServer {
  public:
    // Binds what `opt` asks for and starts the thread. A metrics address that cannot be bound
    // is an error (`why` says which and why); a control socket that cannot be made (held by a
    // live instance, read-only or missing directory) is skipped with a warning on stderr.
    static std::unique_ptr<ControlServer> start(engine::Engine& engine, RunState& state,
                                                ControlOptions opt, std::string* why);
    ~ControlServer();  // stops and joins the thread; removes the socket file
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    plan::SockAddr metrics_address() const;  // the bound address (port 0 resolved)

  private:
    ControlServer(engine::Engine& e, RunState& s) : engine_(e), state_(s) {}
    void run();
    void serve_http(int fd);
    void serve_ctl(int fd);
    std::string metrics_text();
    std::string status(bool json);
    std::string connections(bool json, const std::string& listener, size_t limit);

    engine::Engine& engine_;
    RunState& state_;
    ControlOptions opt_;
    engine::UniqueFd http_;
    engine::UniqueFd ctl_;
    engine::UniqueFd wake_;
    bool own_socket_file_ = false;
    std::thread thread_;
};

}  // namespace tp::tools
