// `tpengine -c FILE`: load the rule set, bring the listeners up, apply the kernel set-up under
// an undo journal, serve, reload on SIGHUP, and take the rules out before the listeners close.
// Also --check (validate + preflight), --dry-run (print), --cleanup (sweep) and --no-rules.
#include <arpa/inet.h>
#include <mimalloc.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "config/cleanup.h"
#include "config/conntrack_flush.h"
#include "config/kernel_apply.h"
#include "config/load.h"
#include "config/nft_bigsets.h"
#include "config/preflight.h"
#include "config/preflight_env.h"
#include "config/preflight_tproxy.h"
#include "config/rule_counters.h"
#include "engine/engine.h"
#include "engine/log.h"
#include "engine/sock.h"
#include "engine/uring_probe.h"
#include "tools/tpengine/commands.h"
#include "tools/tpengine/control.h"
#include "tools/tpengine/privileges.h"
#include "tools/tpengine/sd_notify.h"
#include "tools/tpengine/serve.h"

#ifndef TPENGINE_VERSION
#define TPENGINE_VERSION "unknown"
#endif

namespace tp::tools {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

const char kUsage[] =
    "usage: tpengine -c FILE [--check | --dry-run[=nft|routes] | --cleanup] [--no-rules]\n"
    "                [--strict] [-v] [--workers N]\n"
    "       tpengine relay ...        (tcprdr-compatible relay; see `tpengine relay --help`)\n"
    "       tpengine --help | --version\n"
    "\n"
    "Runs the transparent proxy described by the YAML rule set FILE: brings the listeners up,\n"
    "then installs the nftables table and the policy routing (ip rule + local route, IPv4 and\n"
    "IPv6) in one go; on SIGTERM/SIGINT removes them again before the listeners close.\n"
    "\n"
    "  -c, --config FILE  the rule set (required)\n"
    "  --check            validate FILE and preflight this kernel (nft tproxy/socket support,\n"
    "                     IP_TRANSPARENT/SO_MARK permission, ip_forward, listener addresses,\n"
    "                     route table and rule priority free); changes nothing; prints\n"
    "                     `configuration valid` and exits 0, else lists every problem, exit 1;\n"
    "                     also looks at the rest of the firewall, the interfaces, other sockets\n"
    "                     on the listeners' ports and the limits (warnings; also at start)\n"
    "  --strict           warnings (`tpengine: warning: ...` on stderr) are errors, for\n"
    "                     --check and at start\n"
    "  --dry-run          print the nft batch and the ip rule/route commands; changes nothing\n"
    "  --dry-run=nft      print only the nft batch (input for `nft -f`, or a firewall's include)\n"
    "  --dry-run=routes   print only the ip rule/route commands (a shell script)\n"
    "  --cleanup          remove what a killed instance with this FILE left behind (its nft\n"
    "                     table, ip rules and local routes) and exit\n"
    "  --no-rules         run the relays only; never touch nftables or policy routing (for\n"
    "                     firewalls such as OpenWrt fw4 or firewalld that include the\n"
    "                     --dry-run=nft output themselves)\n"
    "  --workers N        worker threads (overrides `workers:` in FILE)\n"
    "  -v, --verbose      log each kernel change and each connection\n"
    "  --log-level LEVEL  error, warning, info or debug (overrides `log: {level}` in FILE)\n"
    "  -h, --help         this text\n"
    "  -V, --version      print the version\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop (rules out, then drain), SIGHUP reloads FILE (an invalid\n"
    "file is rejected and the running set-up kept), SIGUSR1 prints statistics.\n"
    "Exit status: 0 clean stop or success, 1 configuration or runtime failure, 2 usage.\n";

enum class Mode { run, check, dry_run, cleanup };
// What --dry-run prints: both parts, or one of them alone (a firewall includes the nft part).
enum class DryRunPart { all, nft, routes };

struct Options {
    std::string file;
    Mode mode = Mode::run;
    DryRunPart dry_run = DryRunPart::all;
    bool no_rules = false;
    bool strict = false;  // warnings fail --check and the start
    bool verbose = false;
    unsigned workers = 0;
    bool workers_set = false;
    std::string log_level;  // "" = from FILE
};

int usage_error(const std::string& why) {
    std::fprintf(stderr, "tpengine: %s\n(see `tpengine --help`)\n", why.c_str());
    return kExitUsage;
}

// Returns -1 when options are complete, else the exit code to return at once.
int parse(int argc, char** argv, Options& o) {
    bool mode_set = false;
    auto set_mode = [&](Mode m) -> bool {
        if (mode_set && o.mode != m) {
            return false;
        }
        o.mode = m;
        mode_set = true;
        return true;
    };
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        std::string value;
        bool has_inline = false;
        if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
            value = a.substr(a.find('=') + 1);
            a = a.substr(0, a.find('='));
            has_inline = true;
        }
        auto take_value = [&](std::string& out) -> bool {
            if (has_inline) {
                out = value;
                return true;
            }
            if (i + 1 >= argc) {
                return false;
            }
            out = argv[++i];
            return true;
        };
        if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            return kExitOk;
        }
        if (a == "-V" || a == "--version") {
            std::printf("tpengine %s\n", TPENGINE_VERSION);
            return kExitOk;
        }
        if (a == "-c" || a == "--config") {
            if (!take_value(o.file) || o.file.empty()) {
                return usage_error(a + " needs a FILE");
            }
        } else if (a == "--check" || a == "--dry-run" || a == "--cleanup") {
            Mode m = a == "--check"     ? Mode::check
                     : a == "--dry-run" ? Mode::dry_run
                                        : Mode::cleanup;
            if (!set_mode(m)) {
                return usage_error("--check, --dry-run and --cleanup exclude each other");
            }
            if (has_inline && m != Mode::dry_run) {
                return usage_error(a + " takes no value");
            }
            if (has_inline) {
                if (value != "nft" && value != "routes") {
                    return usage_error("--dry-run=" + value +
                                       ": expected --dry-run=nft or --dry-run=routes");
                }
                o.dry_run = value == "nft" ? DryRunPart::nft : DryRunPart::routes;
            }
        } else if (a == "--no-rules") {
            o.no_rules = true;
        } else if (a == "--strict") {
            o.strict = true;
        } else if (a == "-v" || a == "--verbose") {
            o.verbose = true;
        } else if (a == "--log-level") {
            log::Level lv;
            if (!take_value(o.log_level) || !log::parse_level(o.log_level, lv)) {
                return usage_error("--log-level: expected error, warning, info or debug");
            }
        } else if (a == "--workers") {
            std::string n;
            if (!take_value(n)) {
                return usage_error("--workers needs a number");
            }
            char* end = nullptr;
            errno = 0;
            unsigned long w = std::strtoul(n.c_str(), &end, 10);
            if (n.empty() || *end != '\0' || errno != 0 || w == 0 || w > 1024 || n[0] == '-') {
                return usage_error("--workers: `" + n + "` is not a number from 1 to 1024");
            }
            o.workers = static_cast<unsigned>(w);
            o.workers_set = true;
        } else {
            return usage_error("unknown argument `" + std::string(argv[i]) + "`");
        }
    }
    if (o.file.empty()) {
        return usage_error("no rule set given: use -c FILE");
    }
    if (o.no_rules && (o.mode == Mode::dry_run || o.mode == Mode::cleanup)) {
        return usage_error("--no-rules goes with running or --check only");
    }
    if (o.strict && (o.mode == Mode::dry_run || o.mode == Mode::cleanup)) {
        return usage_error("--strict goes with running or --check only");
    }
    return -1;
}

void log_line(const std::string& text) {
    log::write(log::Level::info, "tpengine: %s", text.c_str());
}

void log_error(const std::string& text) {
    log::write(log::Level::error, "tpengine: %s", text.c_str());
}

// Loads FILE; on errors prints every diagnostic and returns false.
// `errors` (optional) receives the same text, for `tpengine ctl reload`.
bool load(const Options& o, config::LoadedConfig& out, const char* consequence,
          std::string* errors = nullptr) {
    config::LoadResult r = config::load_config_file(o.file);
    if (auto* diags = std::get_if<std::vector<config::Diagnostic>>(&r)) {
        std::string text;
        for (const config::Diagnostic& d : *diags) {
            text += d.format() + "\n";
        }
        char tail[512];
        std::snprintf(tail, sizeof tail, "tpengine: %s: %zu error%s; %s\n", o.file.c_str(),
                      diags->size(), diags->size() == 1 ? "" : "s", consequence);
        text += tail;
        std::fputs(text.c_str(), stderr);
        if (errors) {
            *errors = text;
        }
        return false;
    }
    out = std::move(std::get<config::LoadedConfig>(r));
    if (o.workers_set) {
        out.plan.workers = o.workers;
    }
    if (o.verbose) {
        out.plan.log_connections = true;
    }
    out.plan.close_records = out.observe.log_connections;
    out.plan.close_records_json = out.observe.log_format == "json";
    return true;
}

// Rules of the rule set, counted from the generator's per-rule named counters.
size_t rule_count(const config::KernelSetup& k) {
    size_t n = 0;
    for (size_t p = 0; (p = k.nft_batch.find("counter rule-", p)) != std::string::npos; ++p) {
        if (p > 0 && k.nft_batch[p - 1] == '\t') {
            ++n;
        }
    }
    return n;
}

std::string running_line(const config::LoadedConfig& c, bool no_rules) {
    std::string s = "running (";
    if (no_rules) {
        s += "no rules applied";
    } else {
        s += "table inet " + c.kernel.nft_table;
    }
    s += ", " + std::to_string(c.plan.listeners.size()) + " listener" +
         (c.plan.listeners.size() == 1 ? "" : "s");
    if (!no_rules) {
        size_t n = rule_count(c.kernel);
        s += ", " + std::to_string(n) + " rule" + (n == 1 ? "" : "s");
    }
    return s + ")";
}

std::unique_ptr<config::KernelApplier> open_applier(const Options& o) {
    std::string err;
    auto a = config::KernelApplier::open(&err);
    if (!a) {
        log_line(err);
        return nullptr;
    }
    if (o.verbose) {
        a->set_log(log_line);
    }
    if (const char* step = std::getenv("TPENGINE_TEST_FAIL_AT")) {
        a->set_fail_at(step);
    }
    return a;
}

int do_check(const Options& o) {
    config::LoadedConfig cfg;
    if (!load(o, cfg, "not valid")) {
        return kExitFailure;
    }
    config::PreflightReport r = config::preflight(cfg, !o.no_rules);
    engine::UringProbe uring = engine::probe_uring();
    r.failures.insert(r.failures.end(), uring.problems.begin(), uring.problems.end());
    if (o.verbose) {
        r.warnings.insert(r.warnings.end(), uring.notes.begin(), uring.notes.end());
    }
    for (const std::string& w : r.warnings) {
        std::fprintf(stderr, "tpengine: warning: %s\n", w.c_str());
    }
    for (const std::string& f : r.failures) {
        std::fprintf(stderr, "tpengine: %s: %s\n", o.file.c_str(), f.c_str());
    }
    size_t warnings = r.warnings.size();
    std::string counted = std::to_string(warnings) + " warning" + (warnings == 1 ? "" : "s");
    if (!r.ok()) {
        std::fprintf(stderr,
                     "tpengine: %s: the configuration is valid but this system cannot run "
                     "it (%zu problem%s and %s above)\n",
                     o.file.c_str(), r.failures.size(), r.failures.size() == 1 ? "" : "s",
                     counted.c_str());
        return kExitFailure;
    }
    if (o.strict && warnings > 0) {
        std::fprintf(stderr, "tpengine: %s: %s above, errors under --strict\n", o.file.c_str(),
                     counted.c_str());
        return kExitFailure;
    }
    if (warnings > 0) {
        std::printf("configuration valid, %s (on stderr)\n", counted.c_str());
    } else {
        std::printf("configuration valid\n");
    }
    return kExitOk;
}

int do_dry_run(const Options& o) {
    config::LoadedConfig cfg;
    if (!load(o, cfg, "nothing printed")) {
        return kExitFailure;
    }
    std::string batch = cfg.kernel.nft_batch;
    if (!batch.empty() && batch.back() != '\n') {
        batch += '\n';
    }
    if (o.dry_run != DryRunPart::routes) {
        std::fputs(batch.c_str(), stdout);
    }
    if (o.dry_run != DryRunPart::nft) {
        std::fputs(config::routes_text(cfg.kernel).c_str(), stdout);
    }
    return kExitOk;
}

// One instance per nft table per network namespace: a second one would sweep the first's
// rules as "stale" and each would remove the other's at stop. The lock is a listening unix
// socket in the abstract namespace, which is scoped to the network namespace and released by
// the kernel when the holder dies (kill -9 included); no file is left anywhere.
class InstanceLock {
  public:
    // Returns "" when locked (or when no socket can be made: best effort), else why not.
    std::string acquire(const std::string& table) {
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::string name = "tpengine/table/inet/" + table;
        std::memcpy(addr.sun_path + 1, name.data(),
                    std::min(name.size(), sizeof addr.sun_path - 2));
        auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                          std::min(name.size(), sizeof addr.sun_path - 2));
        fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            return {};
        }
        if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0 && listen(fd_, 1) == 0) {
            return {};
        }
        int e = errno;
        close(fd_);
        fd_ = -1;
        if (e != EADDRINUSE) {
            return {};
        }
        // Who holds it: ask the kernel for the listener's credentials.
        std::string who = "?";
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            ucred cred{};
            socklen_t clen = sizeof cred;
            if (connect(probe, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
                getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
                who = std::to_string(cred.pid);
            }
            close(probe);
        }
        return "another tpengine (pid " + who + ") runs table inet " + table +
               " in this network namespace";
    }
    ~InstanceLock() {
        if (fd_ >= 0) {
            close(fd_);
        }
    }

  private:
    int fd_ = -1;
};

int do_cleanup(const Options& o) {
    config::LoadedConfig cfg;
    if (!load(o, cfg, "cannot tell what to clean up")) {
        return kExitFailure;
    }
    InstanceLock lock;
    if (std::string busy = lock.acquire(cfg.kernel.nft_table); !busy.empty()) {
        log_line(busy + ": it is not stale; stop it with SIGTERM instead of --cleanup");
        return kExitFailure;
    }
    auto applier = open_applier(o);
    if (!applier) {
        return kExitFailure;
    }
    config::SweepResult r = applier->remove(cfg.kernel);
    if (r.removed_anything()) {
        log_line("removed " + r.summary());
    } else {
        log_line("nothing to clean up");
    }
    if (!r.ok()) {
        std::fprintf(stderr, "tpengine: could not remove:\n%s", r.errors.c_str());
        return kExitFailure;
    }
    return kExitOk;
}

bool same_routing(const config::KernelSetup& a, const config::KernelSetup& b) {
    if (a.rules.size() != b.rules.size() || a.routes.size() != b.routes.size()) {
        return false;
    }
    for (size_t i = 0; i < a.rules.size(); ++i) {
        const auto &x = a.rules[i], &y = b.rules[i];
        if (x.family != y.family || x.mark != y.mark || x.mask != y.mask || x.table != y.table ||
            x.priority != y.priority) {
            return false;
        }
    }
    for (size_t i = 0; i < a.routes.size(); ++i) {
        if (a.routes[i].family != b.routes[i].family || a.routes[i].table != b.routes[i].table) {
            return false;
        }
    }
    return true;
}

// `next` plus the listeners of `current` that `next` no longer names (matched by name).
plan::Plan with_retiring_listeners(const plan::Plan& next, const plan::Plan& current) {
    plan::Plan bridge = next;
    for (const plan::Listener& old : current.listeners) {
        bool kept = false;
        for (const plan::Listener& l : next.listeners) {
            kept = kept || l.name == old.name;
        }
        if (!kept) {
            bridge.listeners.push_back(old);
        }
    }
    return bridge;
}

// The engine's error, naming the listener and its address when it concerns one of `p`'s.
std::string engine_error(const Error& e, const plan::Plan& p) {
    std::string where;
    if (e.listener >= 0 && static_cast<size_t>(e.listener) < p.listeners.size()) {
        const plan::Listener& l = p.listeners[static_cast<size_t>(e.listener)];
        char host[INET6_ADDRSTRLEN] = "?";
        char text[INET6_ADDRSTRLEN + 32];
        const sockaddr* sa = l.address.get();
        if (sa->sa_family == AF_INET) {
            auto* s4 = reinterpret_cast<const sockaddr_in*>(sa);
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
            std::snprintf(text, sizeof text, "%s:%u", host, unsigned{ntohs(s4->sin_port)});
        } else {
            auto* s6 = reinterpret_cast<const sockaddr_in6*>(sa);
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            std::snprintf(text, sizeof text, "[%s]:%u", host, unsigned{ntohs(s6->sin6_port)});
        }
        where = "listener " + l.name + " (" + text + "): ";
    }
    return where + e.what + ": " + std::strerror(e.code);
}

// What a running process keeps of its rule set is small: big sets' elements become a count
// and a hash, enough to compare a reload with (nft_bigsets.h).
void keep_small(config::LoadedConfig& c) {
    c.kernel.nft_batch = config::compact_batch(c.kernel.nft_batch);
    c.kernel.nft_batch.shrink_to_fit();
    // Used once, right after the rules went in (flush_udp_flows); a UDP rule's big list
    // would otherwise stay here at 24 bytes an address.
    std::vector<config::UdpCatch>().swap(c.kernel.udp_catches);
}

// While it lives, memory freed goes back to the system at once; at its end, what is left is
// collected. mimalloc otherwise decommits freed pages only after a delay, and only when it
// runs again later: a quiet process would keep the hundreds of MiB a big list's load and
// libnftables used (setting the delay only just before mi_collect does not do it).
class ReturnMemory {
  public:
    ReturnMemory() : delay_(mi_option_get(mi_option_decommit_delay)) {
        mi_option_set(mi_option_decommit_delay, 0);
    }
    ~ReturnMemory() {
        mi_collect(true);
        mi_option_set(mi_option_decommit_delay, delay_);
    }
    ReturnMemory(const ReturnMemory&) = delete;
    ReturnMemory& operator=(const ReturnMemory&) = delete;

  private:
    long delay_;
};

// UDP flows that began before the rules: their conntrack entries go (conntrack_flush.h).
void flush_udp_flows(const config::KernelSetup& k, bool verbose) {
    config::ConntrackFlushResult f = config::flush_udp_conntrack(k);
    if (!f.error.empty()) {
        log_line("warning: could not flush the conntrack entries of intercepted UDP flows: " +
                 f.error);
    } else if (f.deleted > 0 || verbose) {
        log_line("flushed " + std::to_string(f.deleted) + " conntrack entr" +
                 (f.deleted == 1 ? "y" : "ies") + " of UDP flows the rules now intercept");
    }
}

int do_run(const Options& o) {
    auto reclaim = std::make_unique<ReturnMemory>();
    config::LoadedConfig current;
    if (!load(o, current, "nothing applied")) {
        return kExitFailure;
    }
    {
        log::Level lv = log::Level::info;
        log::parse_level(o.log_level.empty() ? current.observe.log_level : o.log_level, lv);
        log::init(lv, log::Prefix::automatic);
    }
    {
        // The same look at the surroundings as --check, before anything is bound or applied.
        config::PreflightReport pre;
        config::check_environment(current, !o.no_rules, pre);
        if (!o.no_rules) {
            // What makes TPROXY drop silently (src_valid_mark) is refused here too.
            config::check_tproxy_sysctls(current, pre);
        }
        for (const std::string& w : pre.warnings) {
            std::fprintf(stderr, "tpengine: warning: %s\n", w.c_str());
        }
        for (const std::string& f : pre.failures) {
            std::fprintf(stderr, "tpengine: %s: %s\n", o.file.c_str(), f.c_str());
        }
        if (!pre.ok() || (o.strict && !pre.warnings.empty())) {
            log_line(std::to_string(pre.failures.size()) + " problem(s), " +
                     std::to_string(pre.warnings.size()) + " warning(s)" +
                     (o.strict ? " (errors under --strict)" : "") + "; nothing applied");
            return kExitFailure;
        }
    }
    std::unique_ptr<config::KernelApplier> applier;
    auto lock = std::make_unique<InstanceLock>();
    if (!o.no_rules) {
        if (std::string busy = lock->acquire(current.kernel.nft_table); !busy.empty()) {
            log_line(busy + "; nothing applied");
            return kExitFailure;
        }
        applier = open_applier(o);
        if (!applier) {
            return kExitFailure;
        }
    }
    if (engine::UringProbe uring = engine::probe_uring(); !uring.ok()) {
        for (const std::string& p : uring.problems) {
            log_line(p);
        }
        log_line("cannot run on this kernel; nothing applied");
        return kExitFailure;
    }
    // Before the workers exist, so that every thread inherits the reduced set.
    PrivilegeRequest privileges{needed_capabilities(current.plan, true), current.user,
                                current.group};
    if (std::string err = drop_privileges(privileges); !err.empty()) {
        log_line(err + "; nothing applied");
        return kExitFailure;
    }
    // Listeners first: rules must never point at a port nobody listens on.
    auto started = engine::Engine::start(current.plan);
    if (!started) {
        log_error("cannot start the listeners: " + engine_error(started.error(), current.plan) +
                  "; nothing applied");
        return kExitFailure;
    }
    std::unique_ptr<engine::Engine> engine = std::move(started.value());
    auto stop_engine = [&] {
        engine->stop_accepting();
        engine->drain(std::chrono::milliseconds(0));
    };
    RunState run_state;
    if (applier) {
        run_state.set_rule_table(current.kernel.nft_table);
    }
    std::unique_ptr<ControlServer> control;
    {
        ControlOptions copt;
        copt.metrics = current.observe.metrics;
        copt.socket_path = current.observe.control_socket;
        copt.socket_group = current.observe.control_group;
        if (applier) {
            // Called on the control thread only: its own libnftables context, made on first use.
            copt.rules = [&run_state,
                          reader = std::shared_ptr<config::RuleCounterReader>()]() mutable {
                std::vector<engine::RuleCounter> out;
                if (!reader) {
                    reader = config::RuleCounterReader::create();
                }
                if (reader) {
                    for (auto& v : reader->read(run_state.rule_table())) {
                        out.push_back(engine::RuleCounter{v.name, v.packets, v.bytes});
                    }
                }
                return out;
            };
        }
        if (copt.metrics.len != 0 || !copt.socket_path.empty()) {
            std::string why;
            control = ControlServer::start(*engine, run_state, copt, &why);
            if (!control) {
                log_line(why + "; nothing applied");
                stop_engine();
                return kExitFailure;
            }
        }
    }
    if (applier) {
        config::SweepResult stale = applier->sweep_stale(current.kernel, true);
        if (stale.removed_anything()) {
            log_line("removed what an earlier instance left: " + stale.summary());
        }
        if (!stale.ok()) {
            // Not fatal by itself: whatever is still in the way makes the apply fail cleanly.
            log_line("could not remove everything an earlier instance left:\n" + stale.errors);
        }
        std::string err = applier->apply(current.kernel);
        if (!err.empty()) {
            log_line("cannot apply the kernel set-up; every step taken was undone:\n" + err);
            stop_engine();
            return kExitFailure;
        }
        flush_udp_flows(current.kernel, o.verbose);
    }
    keep_small(current);
    reclaim.reset();
    log_line(running_line(current, o.no_rules));
    std::fflush(stderr);
    notify_ready(running_line(current, o.no_rules));

    bool removal_failed = false;
    ServeHooks hooks;
    hooks.before_stop = [&] {
        if (!applier) {
            return;
        }
        config::SweepResult r = applier->remove(current.kernel);
        if (!r.ok()) {
            removal_failed = true;
            log_line("could not remove:\n" + r.errors);
        } else {
            log_line("stopping: removed " + r.summary());
        }
    };
    hooks.on_reload = [&]() -> ReloadOutcome {
        ReturnMemory reclaim_after_reload;
        config::LoadedConfig next;
        std::string errors;
        if (!load(o, next, "reload rejected; the running configuration stays in force", &errors)) {
            return {false, errors};
        }
        // A new table name needs its own lock before anything changes.
        std::unique_ptr<InstanceLock> next_lock;
        if (applier && next.kernel.nft_table != current.kernel.nft_table) {
            next_lock = std::make_unique<InstanceLock>();
            if (std::string busy = next_lock->acquire(next.kernel.nft_table); !busy.empty()) {
                log_line("reload rejected: " + busy);
                return {false, "reload rejected: " + busy};
            }
        }
        // Listeners the new file drops stay up until the new rules no longer point at them.
        plan::Plan bridge = with_retiring_listeners(next.plan, current.plan);
        if (Result<void> u = engine->update(bridge); !u) {
            std::string why =
                "reload rejected: cannot update the listeners: " + engine_error(u.error(), bridge) +
                "; the running configuration stays in force";
            log_line(why);
            return {false, why};
        }
        if (applier) {
            bool same = next.kernel.nft_table == current.kernel.nft_table &&
                        config::compact_batch(next.kernel.nft_batch) == current.kernel.nft_batch &&
                        same_routing(next.kernel, current.kernel);
            std::string err;
            if (!same) {
                err = applier->replace(current.kernel, next.kernel);
            } else if (applier->nft().table_state(next.kernel.nft_table) == 0) {
                // Someone removed it (`nft flush ruleset`): a reload puts it back.
                err = applier->restore_table(next.kernel);
                if (err.empty()) {
                    log_line("table inet " + next.kernel.nft_table + " was gone; restored");
                }
            }
            if (!err.empty()) {
                log_line("reload rejected: cannot replace the rules:\n" + err);
                if (Result<void> back = engine->update(current.plan); !back) {
                    log_line("could not restore the previous listeners: " +
                             engine_error(back.error(), current.plan));
                }
                return {false, "reload rejected: cannot replace the rules:\n" + err};
            }
        }
        if (bridge.listeners.size() != next.plan.listeners.size()) {
            if (Result<void> u = engine->update(next.plan); !u) {
                log_line("could not close the listeners the new file dropped: " +
                         engine_error(u.error(), next.plan));
            }
        }
        if (applier) {
            flush_udp_flows(next.kernel, o.verbose);
        }
        if (next_lock) {
            lock = std::move(next_lock);
        }
        current = std::move(next);
        keep_small(current);
        log_line("reloaded; " + running_line(current, o.no_rules));
        (void)sd_notify_state("STATUS=" + running_line(current, o.no_rules));
        if (applier) {
            run_state.set_rule_table(current.kernel.nft_table);
        }
        return {true, "reloaded; " + running_line(current, o.no_rules)};
    };
    int rc = serve_until_signal(*engine, current.plan.drain_timeout_ms, hooks, &run_state);
    control.reset();  // before the engine it reads
    engine.reset();
    if (rc == kExitOk && removal_failed) {
        rc = kExitFailure;
    }
    return rc;
}

}  // namespace

int config_main(int argc, char** argv) {
    Options o;
    if (int rc = parse(argc, argv, o); rc >= 0) {
        return rc;
    }
    switch (o.mode) {
        case Mode::check:
            return do_check(o);
        case Mode::dry_run:
            return do_dry_run(o);
        case Mode::cleanup:
            return do_cleanup(o);
        case Mode::run:
            break;
    }
    return do_run(o);
}

}  // namespace tp::tools
