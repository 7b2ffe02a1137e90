// Engine: binds every listener once per worker (SO_REUSEPORT), starts one pinned worker per
// CPU, and forwards reloads and stop requests to the workers as commands.
#include "engine/engine.h"

#include <sched.h>
#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "engine/sock.h"
#include "engine/udp_sock.h"
#include "engine/worker.h"

namespace tp::engine {

struct Engine::Impl {
    std::unique_ptr<ConnLog> conn_log;  // before workers: destroyed after them
    plan::Plan plan;
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<std::shared_ptr<ListenerShared>> listeners;  // index-aligned with plan.listeners
    std::atomic<bool> joined{false};  // read by the control thread (connections)
    // Guards plan and listeners against readers on other threads (stats, addresses) while
    // update() replaces them; workers never take it.
    mutable std::mutex mu;
};

namespace {

std::vector<int> allowed_cpus() {
    std::vector<int> cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int i = 0; i < CPU_SETSIZE; ++i) {
            if (CPU_ISSET(i, &set)) {
                cpus.push_back(i);
            }
        }
    }
    return cpus;
}

void raise_fd_limit() {
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

bool same_addr(const plan::SockAddr& a, const plan::SockAddr& b) {
    return a.len == b.len && std::memcmp(&a.storage, &b.storage, a.len) == 0;
}

bool same_listener(const plan::Listener& a, const plan::Listener& b) {
    return same_addr(a.address, b.address) && a.v6only == b.v6only &&
           a.transparent == b.transparent && a.fast_open == b.fast_open && a.backlog == b.backlog &&
           a.target == b.target && same_addr(a.upstream_address, b.upstream_address) &&
           a.source == b.source && a.orig_dst == b.orig_dst &&
           a.timeouts.connect_ms == b.timeouts.connect_ms &&
           a.timeouts.idle_ms == b.timeouts.idle_ms &&
           a.timeouts.half_closed_ms == b.timeouts.half_closed_ms &&
           a.max_connections == b.max_connections &&
           a.timeouts.handshake_ms == b.timeouts.handshake_ms &&
           a.timeouts.sniff_ms == b.timeouts.sniff_ms && a.protocol == b.protocol &&
           a.rule == b.rule && a.udp.idle_ms == b.udp.idle_ms &&
           a.udp.dns_idle_ms == b.udp.dns_idle_ms &&
           a.udp.dns_close_after_answer == b.udp.dns_close_after_answer &&
           a.udp.quic_idle_ms == b.udp.quic_idle_ms &&
           a.udp.max_flows_per_worker == b.udp.max_flows_per_worker &&
           a.udp.max_flows_per_client == b.udp.max_flows_per_client &&
           a.udp.max_datagram == b.udp.max_datagram &&
           // Routed listeners get new settings on every reload (in place when the socket allows):
           // upstreams and routes are not compared.
           a.routes.empty() && b.routes.empty() && a.accept_proxy == plan::AcceptProxy::none &&
           b.accept_proxy == plan::AcceptProxy::none;
}

// What a listening socket is bound with: a change here needs new sockets; any other change
// is applied to the sockets in place (update_listener) so their accept queues stay.
bool same_socket(const plan::Listener& a, const plan::Listener& b) {
    return same_addr(a.address, b.address) && a.v6only == b.v6only &&
           a.transparent == b.transparent && a.protocol == b.protocol;
}

struct ListenerFds {
    UniqueFd tcp;
    UniqueFd udp;
};

// Binds `l` once per worker. Port 0 is resolved by the first bind and reused by the others,
// so every worker shares one port. On success l.address carries the bound port.
// A `both` listener binds TCP first; its UDP sockets take the same port.
Result<std::vector<ListenerFds>> bind_all(plan::Listener& l, size_t workers, int index) {
    std::vector<ListenerFds> fds;
    // One socket of `made`; the first one bound fixes a port 0 for all that follow.
    auto take = [&](Result<UniqueFd> made, UniqueFd& into) -> Result<void> {
        if (!made) {
            Error e = made.error();
            e.listener = index;
            return e;
        }
        if (l.address.port() == 0) {
            l.address.set_port(local_addr(made.value().get()).port());
        }
        into = std::move(made.value());
        return {};
    };
    for (size_t w = 0; w < workers; ++w) {
        ListenerFds lf;
        if (l.protocol != plan::Protocol::udp) {
            if (auto r = take(make_listener(l), lf.tcp); !r) {
                return r.error();
            }
        }
        if (l.protocol != plan::Protocol::tcp) {
            if (auto r = take(make_udp_listener(l), lf.udp); !r) {
                return r.error();
            }
        }
        fds.push_back(std::move(lf));
    }
    return fds;
}

std::shared_ptr<const SelfSet> build_self_set(
    const std::vector<std::shared_ptr<ListenerShared>>& ls) {
    auto set = std::make_shared<SelfSet>();
    set->load_local_addresses();
    for (const auto& l : ls) {
        set->add_listener(l->cfg.address);
    }
    for (const auto& l : ls) {
        l->fixed_is_self = l->cfg.target == plan::UpstreamTarget::fixed &&
                           set->contains(unmap_v4(l->cfg.upstream_address));
    }
    return set;
}

Result<void> validate(const plan::Plan& p) {
    if (p.udp_reply_sockets_per_worker == 0) {
        return Error{EINVAL, "udp_reply_sockets_per_worker must be > 0"};
    }
    for (size_t i = 0; i < p.listeners.size(); ++i) {
        const plan::Listener& l = p.listeners[i];
        int fam = l.address.family();
        if (fam != AF_INET && fam != AF_INET6) {
            return Error{EINVAL, "listener address missing", static_cast<int>(i)};
        }
        if (l.target == plan::UpstreamTarget::fixed && l.upstream_address.len == 0) {
            return Error{EINVAL, "fixed upstream address missing", static_cast<int>(i)};
        }
        if (l.protocol != plan::Protocol::tcp &&
            (l.udp.max_flows_per_worker == 0 || l.udp.max_flows_per_client == 0 ||
             l.udp.max_datagram == 0 || l.udp.max_datagram > 65'507)) {
            return Error{EINVAL, "UDP flow limits must be > 0, max_datagram 1..65507",
                         static_cast<int>(i)};
        }
        for (size_t j = 0; j < i; ++j) {
            if (p.listeners[j].name == l.name) {
                return Error{EINVAL, "duplicate listener name", static_cast<int>(i)};
            }
        }
    }
    return {};
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::start(const plan::Plan& plan) {
    if (auto v = validate(plan); !v) {
        return v.error();
    }
    raise_fd_limit();
    std::signal(SIGPIPE, SIG_IGN);  // splice() to a reset peer raises it; errors are handled
    std::unique_ptr<Engine> e(new Engine());
    e->impl_ = std::make_unique<Impl>();
    Impl& im = *e->impl_;
    im.plan = plan;
    auto mem = std::make_shared<MemGuard>();
    mem->init(plan.memory_limit);
    std::vector<int> cpus = allowed_cpus();
    size_t n = plan.workers ? plan.workers : (cpus.empty() ? 1 : cpus.size());

    std::vector<std::vector<ListenerFds>> fds;  // [listener][worker]
    for (size_t i = 0; i < im.plan.listeners.size(); ++i) {
        auto r = bind_all(im.plan.listeners[i], n, static_cast<int>(i));
        if (!r) {
            return r.error();
        }
        fds.push_back(std::move(r.value()));
        auto shared = std::make_shared<ListenerShared>();
        shared->cfg = im.plan.listeners[i];
        shared->counters = std::make_shared<ListenerCounterSet>(static_cast<unsigned>(n));
        shared->routes = RouteTable(shared->cfg);
        im.listeners.push_back(std::move(shared));
    }
    auto self = build_self_set(im.listeners);
    if (plan.close_records) {
        im.conn_log = std::make_unique<ConnLog>(static_cast<unsigned>(n), plan.close_records_json);
    }

    for (size_t w = 0; w < n; ++w) {
        WorkerConfig wc;
        wc.index = static_cast<unsigned>(w);
        wc.cpu = cpus.empty() ? -1 : cpus[w % cpus.size()];
        wc.bypass_mark = plan.bypass_mark;
        wc.buffer_size = plan.buffer_size ? plan.buffer_size : 16384;
        wc.buffers = plan.buffers_per_worker ? plan.buffers_per_worker : 4096;
        wc.log_connections = plan.log_connections;
        wc.close_log = im.conn_log ? &im.conn_log->ring(static_cast<unsigned>(w)) : nullptr;
        wc.splice = std::getenv("TPENGINE_NO_SPLICE") == nullptr;  // A/B switch for benches
        wc.direct_send = std::getenv("TPENGINE_NO_DIRECT_SEND") == nullptr;  // likewise
        wc.udp_reply_sockets = plan.udp_reply_sockets_per_worker;
        wc.udp_reply_mark = plan.udp_reply_mark != 0 ? plan.udp_reply_mark : plan.bypass_mark;
        wc.udp_direct_send = std::getenv("TPENGINE_UDP_DIRECT_SEND") != nullptr;  // A/B switch
        wc.udp_gso = std::getenv("TPENGINE_UDP_NO_GSO") == nullptr;               // likewise
        wc.udp_gro = std::getenv("TPENGINE_UDP_NO_GRO") == nullptr;               // likewise
        if (mem->enabled()) {
            wc.mem = mem;
        }
        auto worker = std::make_unique<Worker>(wc);
        std::vector<WorkerListener> wl;
        for (size_t i = 0; i < im.listeners.size(); ++i) {
            wl.push_back(WorkerListener{im.listeners[i], std::move(fds[i][w].tcp), nullptr,
                                        std::move(fds[i][w].udp)});
        }
        if (auto r = worker->start(std::move(wl), self); !r) {
            for (auto& started : im.workers) {
                started->post(Worker::Command{Worker::CommandType::exit, {}, nullptr, nullptr});
                started->join();
            }
            im.joined = true;
            return r.error();
        }
        im.workers.push_back(std::move(worker));
    }
    return e;
}

Result<void> Engine::update(const plan::Plan& plan) {
    Impl& im = *impl_;
    if (im.joined) {
        return Error{ESHUTDOWN, "engine stopped"};
    }
    if (auto v = validate(plan); !v) {
        return v.error();
    }
    size_t n = im.workers.size();
    std::vector<std::shared_ptr<ListenerShared>> next;
    std::vector<std::vector<ListenerFds>> fds;
    std::vector<std::shared_ptr<ListenerShared>> replaces;  // in-place changes
    plan::Plan resolved = plan;
    for (size_t i = 0; i < resolved.listeners.size(); ++i) {
        plan::Listener& l = resolved.listeners[i];
        std::shared_ptr<ListenerShared> keep;
        std::shared_ptr<ListenerShared> alter;
        for (size_t j = 0; j < im.plan.listeners.size(); ++j) {
            const plan::Listener& old = im.plan.listeners[j];
            plan::Listener probe = l;
            if (probe.address.port() == 0) {  // port 0 means "whatever it got last time"
                probe.address.set_port(old.address.port());
            }
            if (old.name == l.name && same_listener(old, probe)) {
                keep = im.listeners[j];
                l = old;
            } else if (old.name == l.name && same_socket(old, probe)) {
                alter = im.listeners[j];
                l = probe;
            }
        }
        if (keep) {
            next.push_back(keep);
            fds.emplace_back();
            replaces.emplace_back();
            continue;
        }
        if (alter) {
            auto shared = std::make_shared<ListenerShared>(alter->counter);
            shared->cfg = l;
            shared->counters = alter->counters;
            shared->routes = RouteTable(shared->cfg);
            next.push_back(std::move(shared));
            fds.emplace_back();
            replaces.push_back(alter);
            continue;
        }
        auto r = bind_all(l, n, static_cast<int>(i));
        if (!r) {
            return r.error();
        }
        auto shared = std::make_shared<ListenerShared>();
        shared->cfg = l;
        shared->counters = std::make_shared<ListenerCounterSet>(static_cast<unsigned>(n));
        shared->routes = RouteTable(shared->cfg);
        next.push_back(std::move(shared));
        fds.push_back(std::move(r.value()));
        replaces.emplace_back();
    }
    auto self = build_self_set(next);
    for (size_t w = 0; w < n; ++w) {
        Worker::Command cmd{Worker::CommandType::set_listeners, {}, self, nullptr};
        for (size_t i = 0; i < next.size(); ++i) {
            ListenerFds lf = fds[i].empty() ? ListenerFds{} : std::move(fds[i][w]);
            cmd.listeners.push_back(
                WorkerListener{next[i], std::move(lf.tcp), replaces[i], std::move(lf.udp)});
        }
        im.workers[w]->post(std::move(cmd));
    }
    std::lock_guard<std::mutex> lock(im.mu);
    uint32_t keep_workers = im.plan.workers;
    im.plan = resolved;
    im.plan.workers = keep_workers;
    im.listeners = std::move(next);
    return {};
}

void Engine::stop_accepting() {
    if (impl_->joined) {
        return;
    }
    for (auto& w : impl_->workers) {
        w->post(Worker::Command{Worker::CommandType::stop_accepting, {}, nullptr, nullptr});
    }
}

bool Engine::drain(std::chrono::milliseconds timeout) {
    Impl& im = *impl_;
    if (im.joined) {
        return stats().active == 0;
    }
    stop_accepting();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool clean = false;
    for (;;) {
        clean = stats().active == 0;
        if (clean || std::chrono::steady_clock::now() >= deadline) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (auto& w : im.workers) {
        w->post(Worker::Command{Worker::CommandType::exit, {}, nullptr, nullptr});
    }
    for (auto& w : im.workers) {
        w->join();
    }
    im.joined = true;
    return clean;
}

std::vector<plan::SockAddr> Engine::listening_addresses() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    std::vector<plan::SockAddr> out;
    for (const auto& l : impl_->plan.listeners) {
        out.push_back(l.address);
    }
    return out;
}

uint64_t Engine::log_records_dropped() const {
    return impl_->conn_log ? impl_->conn_log->dropped() : 0;
}

unsigned Engine::worker_count() const {
    return static_cast<unsigned>(impl_->workers.size());
}

const char* Engine::ring_mode() const {
    return impl_->workers.empty() ? "" : impl_->workers[0]->ring_mode();
}

StatsSnapshot Engine::stats() const {
    StatsSnapshot total;
    for (const auto& w : impl_->workers) {
        StatsSnapshot s = w->stats().snapshot();
        total.accepted += s.accepted;
        total.active += s.active;
        total.bytes_up += s.bytes_up;
        total.bytes_down += s.bytes_down;
        total.accept_paused += s.accept_paused;
        total.accept_paused_limit += s.accept_paused_limit;
        total.accept_paused_fd += s.accept_paused_fd;
        total.buffer_grows += s.buffer_grows;
        total.buffer_starved += s.buffer_starved;
        total.buffers += s.buffers;
        total.stale_dropped += s.stale_dropped;
        total.mem_paused += s.mem_paused;
        total.mem_refused += s.mem_refused;
        for (size_t i = 0; i < s.closed.size(); ++i) {
            total.closed[i] += s.closed[i];
        }
        for (size_t i = 0; i < s.handshake.size(); ++i) {
            total.handshake[i] += s.handshake[i];
        }
        total.udp.add(s.udp);
        total.per_worker.push_back(std::move(s));
    }
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& l : impl_->listeners) {
        total.listeners.push_back(l->counters ? l->counters->snapshot(l->cfg.name)
                                              : ListenerSnapshot{});
        total.listeners.back().udp = l->cfg.protocol != plan::Protocol::tcp;
    }
    return total;
}

std::vector<ConnInfo> Engine::connections(std::chrono::milliseconds timeout) const {
    Impl& im = *impl_;
    if (im.joined) {
        return {};
    }
    auto q = std::make_shared<ConnQuery>();
    q->pending = static_cast<unsigned>(im.workers.size());
    for (auto& w : im.workers) {
        w->post(Worker::Command{Worker::CommandType::list_connections, {}, nullptr, q});
    }
    std::unique_lock<std::mutex> lock(q->mu);
    q->cv.wait_for(lock, timeout, [&] { return q->pending == 0; });
    return q->conns;  // a copy: a late worker may still append to q
}

Engine::~Engine() {
    if (impl_ && !impl_->joined) {
        drain(std::chrono::milliseconds(0));
    }
}

}  // namespace tp::engine
