// The control thread: one poll loop over the metrics listener and the control socket, one
// request at a time (each bounded by socket timeouts), so a slow client delays others by at
// most a few seconds and never a worker.
#include "tools/tpengine/control.h"

#include <arpa/inet.h>
#include <grp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "engine/log.h"
#include "engine/sock.h"

#ifndef TPENGINE_VERSION
#define TPENGINE_VERSION "unknown"
#endif

namespace tp::tools {
namespace {

constexpr size_t kMaxRequest = 8192;

void set_timeouts(int fd, int seconds) {
    timeval tv{seconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Reads until `end` appears (or EOF, the limit, a timeout).
std::string read_request(int fd, const char* end) {
    std::string in;
    char buf[1024];
    while (in.size() < kMaxRequest && in.find(end) == std::string::npos) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            break;
        }
        in.append(buf, static_cast<size_t>(n));
    }
    return in;
}

void write_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        off += static_cast<size_t>(n);
    }
}

std::string json_str(const std::string& s) {
    std::string out = "\"";
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            char esc[8];
            std::snprintf(esc, sizeof esc, "\\u%04x", c);
            out += esc;
        } else {
            out += ch;
        }
    }
    return out + "\"";
}

std::string num(uint64_t v) {
    return std::to_string(v);
}

std::string fixed(double v, int digits) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", digits, v);
    return b;
}

std::string iso_time(double unix_s) {
    time_t t = static_cast<time_t>(unix_s);
    tm tmv;
    gmtime_r(&t, &tmv);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    return b;
}

std::vector<std::string> words(const std::string& line) {
    std::vector<std::string> out;
    size_t p = 0;
    while (p < line.size()) {
        while (p < line.size() && (line[p] == ' ' || line[p] == '\t')) {
            ++p;
        }
        size_t e = p;
        while (e < line.size() && line[e] != ' ' && line[e] != '\t') {
            ++e;
        }
        if (e > p) {
            out.push_back(line.substr(p, e - p));
        }
        p = e;
    }
    return out;
}

}  // namespace

std::unique_ptr<ControlServer> ControlServer::start(engine::Engine& engine, RunState& state,
                                                    ControlOptions opt, std::string* why) {
    std::unique_ptr<ControlServer> c(new ControlServer(engine, state));
    c->opt_ = std::move(opt);
    c->wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (c->opt_.metrics.len != 0) {
        const plan::SockAddr& a = c->opt_.metrics;
        engine::UniqueFd fd(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
        int one = 1;
        if (!fd.valid() || setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            ::bind(fd.get(), a.get(), a.len) != 0 || ::listen(fd.get(), 64) != 0) {
            *why =
                "metrics: cannot listen on " + engine::format_addr(a) + ": " + std::strerror(errno);
            return nullptr;
        }
        c->http_ = std::move(fd);
    }
    if (!c->opt_.socket_path.empty()) {
        const std::string& path = c->opt_.socket_path;
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        if (path.size() >= sizeof addr.sun_path) {
            *why = "control socket path too long: " + path;
            return nullptr;
        }
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        std::string dir = path.substr(0, path.rfind('/'));
        if (!dir.empty()) {
            ::mkdir(dir.c_str(), 0755);  // /run/tpengine on a first start; exists otherwise
        }
        engine::UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe.valid() &&
            ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
            log::write(log::Level::warning,
                       "tpengine: warning: control socket %s is in use by another instance; "
                       "no control socket for this one",
                       path.c_str());
        } else {
            ::unlink(path.c_str());  // left by an instance that died
            engine::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
            mode_t old = ::umask(0177);  // never reachable by others, not even for a moment
            bool ok = fd.valid() &&
                      ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
            ::umask(old);
            if (!ok || ::listen(fd.get(), 16) != 0) {
                // Not fatal: the relays matter more than the control socket (a read-only /run
                // under ProtectSystem=strict without RuntimeDirectory=, a missing directory).
                log::write(log::Level::warning,
                           "tpengine: warning: control socket %s: %s; running without it",
                           path.c_str(), std::strerror(errno));
                fd.reset();
            }
            if (fd.valid()) {
                if (!c->opt_.socket_group.empty()) {
                    group g;
                    group* res = nullptr;
                    char buf[4096];
                    if (getgrnam_r(c->opt_.socket_group.c_str(), &g, buf, sizeof buf, &res) != 0 ||
                        res == nullptr) {
                        ::unlink(path.c_str());
                        *why = "control.group: no group named " + c->opt_.socket_group;
                        return nullptr;
                    }
                    if (::chown(path.c_str(), static_cast<uid_t>(-1), g.gr_gid) != 0 ||
                        ::chmod(path.c_str(), 0660) != 0) {
                        ::unlink(path.c_str());
                        *why = "control socket " + path + ": " + std::strerror(errno);
                        return nullptr;
                    }
                }
                c->ctl_ = std::move(fd);
                c->own_socket_file_ = true;
            }
        }
    }
    ControlServer* self = c.get();
    c->thread_ = std::thread([self] { self->run(); });
    return c;
}

ControlServer::~ControlServer() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
    if (thread_.joinable()) {
        thread_.join();
    }
    if (own_socket_file_) {
        ::unlink(opt_.socket_path.c_str());
    }
}

plan::SockAddr ControlServer::metrics_address() const {
    return http_.valid() ? engine::local_addr(http_.get()) : plan::SockAddr{};
}

void ControlServer::run() {
    pthread_setname_np(pthread_self(), "tpengine-ctl");
    for (;;) {
        pollfd p[3] = {{wake_.get(), POLLIN, 0}, {http_.get(), POLLIN, 0}, {ctl_.get(), POLLIN, 0}};
        int rc = ::poll(p, 3, -1);  // a negative fd (feature off) is ignored by poll
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if (p[0].revents) {
            return;
        }
        for (int i = 1; i < 3; ++i) {
            if (!(p[i].revents & POLLIN)) {
                continue;
            }
            engine::UniqueFd client(::accept4(p[i].fd, nullptr, nullptr, SOCK_CLOEXEC));
            if (!client.valid()) {
                continue;
            }
            set_timeouts(client.get(), 2);
            if (i == 1) {
                serve_http(client.get());
            } else {
                serve_ctl(client.get());
            }
        }
    }
}

std::string ControlServer::metrics_text() {
    engine::MetricsInput in;
    in.stats = engine_.stats();
    if (opt_.rules) {
        in.rules = opt_.rules();
    }
    in.version = TPENGINE_VERSION;
    in.ring_mode = engine_.ring_mode();
    in.workers = engine_.worker_count();
    in.start_time_unix = state_.start_unix();
    RunState::Reloads r = state_.reloads();
    in.reloads_ok = r.ok;
    in.reloads_failed = r.failed;
    in.last_reload_success_unix = r.last_success_unix;
    in.log_records_dropped = engine_.log_records_dropped();
    return engine::render_prometheus(in);
}

void ControlServer::serve_http(int fd) {
    std::string req = read_request(fd, "\r\n\r\n");
    std::string line = req.substr(0, req.find_first_of("\r\n"));
    std::vector<std::string> w = words(line);
    std::string status = "200 OK";
    std::string body;
    std::string type = "text/plain; version=0.0.4; charset=utf-8";
    if (w.size() < 2 || (w[0] != "GET" && w[0] != "HEAD")) {
        status = "405 Method Not Allowed";
        body = "only GET /metrics\n";
        type = "text/plain";
    } else if (w[1] != "/metrics" && w[1].rfind("/metrics?", 0) != 0) {
        status = "404 Not Found";
        body = "try /metrics\n";
        type = "text/plain";
    } else {
        body = metrics_text();
    }
    std::string head = "HTTP/1.0 " + status + "\r\nContent-Type: " + type +
                       "\r\nContent-Length: " + num(body.size()) + "\r\nConnection: close\r\n\r\n";
    write_all(fd, w.size() >= 1 && w[0] == "HEAD" ? head : head + body);
}

void ControlServer::serve_ctl(int fd) {
    std::string req = read_request(fd, "\n");
    std::vector<std::string> w = words(req.substr(0, req.find('\n')));
    bool json = false;
    std::string listener;
    size_t limit = SIZE_MAX;
    std::string cmd;
    bool bad = false;
    for (size_t i = 0; i < w.size(); ++i) {
        if (w[i] == "--json") {
            json = true;
        } else if (w[i] == "--listener" && i + 1 < w.size()) {
            listener = w[++i];
        } else if (w[i] == "--limit" && i + 1 < w.size()) {
            limit = std::strtoull(w[++i].c_str(), nullptr, 10);
        } else if (cmd.empty()) {
            cmd = w[i];
        } else {
            bad = true;
        }
    }
    std::string out;
    if (bad || cmd.empty()) {
        out = "ERR\nbad request: " + req.substr(0, req.find('\n')) + "\n";
    } else if (cmd == "status") {
        out = "OK\n" + status(json);
    } else if (cmd == "connections") {
        out = "OK\n" + connections(json, listener, limit);
    } else if (cmd == "reload") {
        ReloadOutcome o = state_.request_reload(std::chrono::seconds(60));
        std::string msg = o.message;
        if (!msg.empty() && msg.back() != '\n') {
            msg += '\n';
        }
        if (json) {
            msg = std::string("{\"ok\":") + (o.ok ? "true" : "false") +
                  ",\"message\":" + json_str(o.message) + "}\n";
        }
        out = (o.ok ? "OK\n" : "ERR\n") + msg;
    } else if (cmd == "stop") {
        out = json ? "OK\n{\"stopping\":true}\n" : "OK\nstopping (graceful)\n";
        write_all(fd, out);
        ::kill(::getpid(), SIGTERM);  // taken by serve_until_signal: rules out, then drain
        return;
    } else {
        out = "ERR\nunknown command: " + cmd + " (status, connections, reload, stop)\n";
    }
    write_all(fd, out);
}

std::string ControlServer::status(bool json) {
    engine::StatsSnapshot st = engine_.stats();
    std::vector<engine::RuleCounter> rules;
    if (opt_.rules) {
        rules = opt_.rules();
    }
    RunState::Reloads r = state_.reloads();
    std::string last = !r.any ? "none" : (r.last.ok ? "ok" : "failed");
    if (json) {
        std::string o = "{\"version\":" + json_str(TPENGINE_VERSION) +
                        ",\"uptime_s\":" + fixed(state_.uptime_s(), 3) +
                        ",\"workers\":" + num(engine_.worker_count()) +
                        ",\"ring_mode\":" + json_str(engine_.ring_mode()) +
                        ",\"accepted\":" + num(st.accepted) + ",\"active\":" + num(st.active) +
                        ",\"closed\":" + num(st.closed_total()) + ",\"listeners\":[";
        for (size_t i = 0; i < st.listeners.size(); ++i) {
            const engine::ListenerSnapshot& l = st.listeners[i];
            o += (i ? "," : "") + std::string("{\"name\":") + json_str(l.name) +
                 ",\"accepted\":" + num(l.accepted) + ",\"active\":" + num(l.active) +
                 ",\"closed\":" + num(l.closed_total()) + ",\"bytes_up\":" + num(l.bytes_up) +
                 ",\"bytes_down\":" + num(l.bytes_down) + ",\"closed_by\":{";
            bool first = true;
            for (size_t c = 0; c < engine::kCloseReasons; ++c) {
                if (l.closed[c]) {
                    o += (first ? "" : ",") +
                         json_str(engine::close_reason_name(static_cast<engine::CloseReason>(c))) +
                         ":" + num(l.closed[c]);
                    first = false;
                }
            }
            o += "},\"connect_errors\":{";
            first = true;
            for (size_t e = 0; e < engine::kConnectErrnoSlots; ++e) {
                if (l.connect_errors[e]) {
                    o += (first ? "" : ",") + json_str(engine::connect_errno_name(e)) + ":" +
                         num(l.connect_errors[e]);
                    first = false;
                }
            }
            o += "}}";
        }
        o += "],\"rules\":[";
        for (size_t i = 0; i < rules.size(); ++i) {
            o += (i ? "," : "") + std::string("{\"name\":") + json_str(rules[i].name) +
                 ",\"packets\":" + num(rules[i].packets) + ",\"bytes\":" + num(rules[i].bytes) +
                 "}";
        }
        o += "],\"reload\":{\"last\":" + json_str(last) + ",\"ok\":" + num(r.ok) +
             ",\"failed\":" + num(r.failed) +
             ",\"last_success\":" + json_str(iso_time(r.last_success_unix)) +
             ",\"message\":" + json_str(r.last.message) + "}}\n";
        return o;
    }
    std::string o = "tpengine " + std::string(TPENGINE_VERSION) + ", up " +
                    fixed(state_.uptime_s(), 0) + "s, " + num(engine_.worker_count()) +
                    " workers, io_uring mode " + engine_.ring_mode() + "\n";
    o += "connections: accepted=" + num(st.accepted) + " active=" + num(st.active) +
         " closed=" + num(st.closed_total()) + " bytes_up=" + num(st.bytes_up) +
         " bytes_down=" + num(st.bytes_down) + "\n";
    for (const engine::ListenerSnapshot& l : st.listeners) {
        o += "listener " + l.name + ": accepted=" + num(l.accepted) + " active=" + num(l.active) +
             " closed=" + num(l.closed_total()) + " bytes_up=" + num(l.bytes_up) +
             " bytes_down=" + num(l.bytes_down) + "\n";
        std::string by;
        for (size_t c = 0; c < engine::kCloseReasons; ++c) {
            if (l.closed[c]) {
                by += std::string(" ") +
                      engine::close_reason_name(static_cast<engine::CloseReason>(c)) + "=" +
                      num(l.closed[c]);
            }
        }
        if (!by.empty()) {
            o += "  closed_by:" + by + "\n";
        }
        std::string errs;
        for (size_t e = 0; e < engine::kConnectErrnoSlots; ++e) {
            if (l.connect_errors[e]) {
                errs += std::string(" ") + engine::connect_errno_name(e) + "=" +
                        num(l.connect_errors[e]);
            }
        }
        if (!errs.empty()) {
            o += "  connect_errors:" + errs + "\n";
        }
    }
    for (const engine::RuleCounter& rc : rules) {
        o += "rule " + rc.name + ": packets=" + num(rc.packets) + " bytes=" + num(rc.bytes) + "\n";
    }
    o += "reloads: ok=" + num(r.ok) + " failed=" + num(r.failed) + " last=" + last +
         " last_success=" + iso_time(r.last_success_unix) + "\n";
    if (r.any && !r.last.ok) {
        o += "last reload error:\n" + r.last.message;
        if (!r.last.message.empty() && r.last.message.back() != '\n') {
            o += '\n';
        }
    }
    return o;
}

std::string ControlServer::connections(bool json, const std::string& listener, size_t limit) {
    std::vector<engine::ConnInfo> all = engine_.connections(std::chrono::milliseconds(2000));
    std::vector<engine::ConnInfo> cs;
    for (engine::ConnInfo& c : all) {
        if ((listener.empty() || c.listener == listener) && cs.size() < limit) {
            cs.push_back(std::move(c));
        }
    }
    std::sort(cs.begin(), cs.end(),
              [](const auto& a, const auto& b) { return a.age_ms > b.age_ms; });
    std::string o;
    if (json) {
        o = "[";
        for (size_t i = 0; i < cs.size(); ++i) {
            const engine::ConnInfo& c = cs[i];
            o += (i ? "," : "") + std::string("{\"worker\":") + num(c.worker) +
                 ",\"listener\":" + json_str(c.listener) + ",\"client\":" + json_str(c.client) +
                 ",\"original\":" + json_str(c.original) + ",\"upstream\":" + json_str(c.upstream) +
                 ",\"age_ms\":" + num(c.age_ms) + ",\"bytes_up\":" + num(c.bytes_up) +
                 ",\"bytes_down\":" + num(c.bytes_down) + ",\"state\":" + json_str(c.state) + "}";
        }
        return o + "]\n";
    }
    char line[512];
    std::snprintf(line, sizeof line, "%-6s %-12s %-40s %-40s %-40s %8s %12s %12s %s\n", "WORKER",
                  "LISTENER", "CLIENT", "ORIGINAL", "UPSTREAM", "AGE", "BYTES_UP", "BYTES_DOWN",
                  "STATE");
    o = line;
    for (const engine::ConnInfo& c : cs) {
        std::snprintf(line, sizeof line,
                      "%-6u %-12s %-40s %-40s %-40s %7.1fs %12" PRIu64 " %12" PRIu64 " %s\n",
                      c.worker, c.listener.c_str(), c.client.c_str(), c.original.c_str(),
                      c.upstream.c_str(), static_cast<double>(c.age_ms) / 1000.0, c.bytes_up,
                      c.bytes_down, c.state);
        o += line;
    }
    return o;
}

}  // namespace tp::tools
