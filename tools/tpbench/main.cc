// tpbench: the io_uring load generator (serve, throughput, rr, connrate, hold). Parses the
// command line, runs one workload, prints its report.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "tools/tpbench/client.h"
#include "tools/tpbench/report.h"
#include "tools/tpbench/serve.h"
#include "tools/tpbench/udp.h"

namespace {

using namespace tp::bench;

std::atomic<bool> g_stop{false};

void on_signal(int) {
    g_stop.store(true);
}

#ifndef TPBENCH_VERSION
#define TPBENCH_VERSION "unknown"
#endif

constexpr char kUsage[] =
    "usage:\n"
    "  tpbench --help | --version\n"
    "  tpbench serve --listen ADDR:PORT --mode echo|sink|source|http [--threads N] [--cpus LIST]\n"
    "  tpbench throughput --target ADDR:PORT --connections N --duration S [--direction "
    "up|down|both]\n"
    "  tpbench rr --target ADDR:PORT --connections N --size BYTES --duration S [--rate R]\n"
    "  tpbench connrate --target ADDR:PORT --concurrency N --duration S [--size BYTES]\n"
    "                   [--count N]   (stop after N connections, or at --duration)\n"
    "  tpbench hold --target ADDR:PORT --connections N --duration S\n"
    "  tpbench serve --listen ADDR:PORT --mode udp-echo|udp-sink [--threads N]\n"
    "  tpbench udp --target ADDR:PORT --flows N --size BYTES --duration S [--rate PPS]\n"
    "              [--window W] [--sink]   (closed loop with W in flight per flow unless --rate;\n"
    "              --sink: the target sends nothing back; --timeout MS counts a datagram lost)\n"
    "client options: --threads N, --cpus LIST (e.g. 0,2-3), --json, --timeout MS (default 3000)\n"
    "throughput: up needs serve --mode sink, down --mode source, both --mode echo;\n"
    "rr, connrate and hold need --mode echo. Exit status 1 when nothing succeeded, 2 on usage.\n";

int usage(const char* why) {
    if (why != nullptr) {
        std::fprintf(stderr, "tpbench: %s\n", why);
    }
    std::fputs(kUsage, stderr);
    return 2;
}

bool parse_num(const std::string& s, double lo, double hi, double& out) {
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    return end != s.c_str() && *end == '\0' && out >= lo && out <= hi;
}

struct Args {
    std::string mode;
    std::string listen, target, serve_mode = "echo", direction = "up", cpus;
    double threads = 1, connections = -1, duration = 5, size = 128, rate = 0, timeout = 3000;
    double flows = 1, window = 1, count = 0;
    bool json = false;
    bool sink = false;
};

int parse(int argc, char** argv, Args& a) {
    a.mode = argv[1];
    for (int i = 2; i < argc; ++i) {
        std::string key = argv[i];
        std::string val;
        if (key == "--json") {
            a.json = true;
            continue;
        }
        if (key == "--sink") {
            a.sink = true;
            continue;
        }
        if (key == "-h" || key == "--help") {
            std::fputs(kUsage, stdout);
            return -1;  // asked for: exit 0
        }
        const auto eq = key.find('=');
        if (eq != std::string::npos) {
            val = key.substr(eq + 1);
            key = key.substr(0, eq);
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return usage(("missing value for " + key).c_str());
        }
        bool ok = true;
        if (key == "--listen") {
            a.listen = val;
        } else if (key == "--target") {
            a.target = val;
        } else if (key == "--mode") {
            a.serve_mode = val;
        } else if (key == "--direction") {
            a.direction = val;
        } else if (key == "--cpus") {
            a.cpus = val;
        } else if (key == "--threads") {
            ok = parse_num(val, 1, 256, a.threads);
        } else if (key == "--connections" || key == "--concurrency") {
            ok = parse_num(val, 1, 1'000'000, a.connections);
        } else if (key == "--duration") {
            ok = parse_num(val, 0.01, 86400, a.duration);
        } else if (key == "--size") {
            ok = parse_num(val, 1, 16 * 1024 * 1024, a.size);
        } else if (key == "--flows") {
            ok = parse_num(val, 1, 100'000, a.flows);
        } else if (key == "--window") {
            ok = parse_num(val, 1, 4096, a.window);
        } else if (key == "--rate") {
            ok = parse_num(val, 0, 1e9, a.rate);
        } else if (key == "--count") {
            ok = parse_num(val, 0, 1e12, a.count);
        } else if (key == "--timeout") {
            ok = parse_num(val, 1, 3'600'000, a.timeout);
        } else {
            return usage(("unknown option " + key).c_str());
        }
        if (!ok) {
            return usage(("bad value '" + val + "' for " + key).c_str());
        }
    }
    return 0;
}

// Reports "nothing succeeded" on stderr with the causes; the caller exits 1.
int nothing(const std::string& what, const std::string& target, const ErrorCounts& e) {
    std::fprintf(stderr, "tpbench: no %s to %s succeeded (errors: %s)\n", what.c_str(),
                 target.c_str(), errors_text(e).c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        return usage(nullptr);
    }
    if (std::string_view(argv[1]) == "-h" || std::string_view(argv[1]) == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (std::string_view(argv[1]) == "-V" || std::string_view(argv[1]) == "--version") {
        std::printf("tpbench %s\n", TPBENCH_VERSION);
        return 0;
    }
    Args a;
    if (const int rc = parse(argc, argv, a); rc != 0) {
        return rc < 0 ? 0 : rc;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    std::vector<int> cpus;
    if (!a.cpus.empty() && !parse_cpu_list(a.cpus, cpus)) {
        return usage(("bad CPU list '" + a.cpus + "'").c_str());
    }
    std::string err;
    if (a.mode == "serve") {
        ServeOptions so;
        if (a.listen.empty()) {
            return usage("serve needs --listen ADDR:PORT");
        }
        if (!parse_addr(a.listen, so.listen, err)) {
            return usage(("--listen " + a.listen + ": " + err).c_str());
        }
        if (a.serve_mode == "udp-echo" || a.serve_mode == "udp-sink") {
            UdpServeOptions uo;
            uo.listen = so.listen;
            uo.echo = a.serve_mode == "udp-echo";
            uo.threads = static_cast<int>(a.threads);
            uo.cpus = cpus;
            return run_udp_serve(uo, g_stop);
        }
        if (a.serve_mode == "echo") {
            so.mode = ServeMode::Echo;
        } else if (a.serve_mode == "sink") {
            so.mode = ServeMode::Sink;
        } else if (a.serve_mode == "source") {
            so.mode = ServeMode::Source;
        } else if (a.serve_mode == "http") {
            so.mode = ServeMode::Http;
        } else {
            return usage(("unknown --mode " + a.serve_mode).c_str());
        }
        so.threads = static_cast<int>(a.threads);
        so.cpus = cpus;
        return run_serve(so, g_stop);
    }
    if (a.mode == "udp") {
        UdpOptions uo;
        if (a.target.empty() || !parse_addr(a.target, uo.target, err)) {
            return usage(("udp needs --target ADDR:PORT " + err).c_str());
        }
        if (a.size > 65507) {
            return usage("udp: --size above 65507");
        }
        uo.flows = static_cast<int>(a.flows);
        uo.size = static_cast<uint32_t>(a.size);
        uo.duration_s = a.duration;
        uo.rate = a.rate;
        uo.window = static_cast<int>(a.window);
        uo.echo = !a.sink;
        uo.threads = static_cast<int>(a.threads);
        uo.cpus = cpus;
        if (a.timeout != 3000) {
            uo.timeout_ms = static_cast<int>(a.timeout);
        }
        const UdpResult r = run_udp(uo);
        print_udp(stdout, uo, format_addr(uo.target), r, a.json);
        return r.sent > 0 && (!uo.echo || r.received > 0) ? 0 : 1;
    }
    if (a.mode != "throughput" && a.mode != "rr" && a.mode != "connrate" && a.mode != "hold") {
        return usage(("unknown command '" + a.mode + "'").c_str());
    }
    ClientOptions o;
    if (a.target.empty()) {
        return usage((a.mode + " needs --target ADDR:PORT").c_str());
    }
    if (!parse_addr(a.target, o.target, err)) {
        return usage(("--target " + a.target + ": " + err).c_str());
    }
    if (a.connections < 0) {
        return usage(
            (a.mode + (a.mode == "connrate" ? " needs --concurrency N" : " needs --connections N"))
                .c_str());
    }
    o.connections = static_cast<int>(a.connections);
    o.duration_s = a.duration;
    o.size = static_cast<uint32_t>(a.size);
    o.rate = a.rate;
    o.threads = static_cast<int>(a.threads);
    o.cpus = cpus;
    o.timeout_ms = static_cast<int>(a.timeout);
    o.count = static_cast<uint64_t>(a.count);
    o.progress = !a.json && isatty(STDERR_FILENO);
    if (a.direction == "up") {
        o.direction = Direction::Up;
    } else if (a.direction == "down") {
        o.direction = Direction::Down;
    } else if (a.direction == "both") {
        o.direction = Direction::Both;
    } else {
        return usage(("unknown --direction " + a.direction).c_str());
    }
    ReportContext ctx{format_addr(o.target), &o, a.json};
    if (a.mode == "throughput") {
        const ThroughputResult r = run_throughput(o);
        if (r.connected == 0) {
            return nothing("connection", ctx.target, r.errors);
        }
        print_throughput(stdout, ctx, r);
        return r.bytes_sent + r.bytes_received > 0 ? 0 : 1;
    }
    if (a.mode == "rr") {
        const RrResult r = run_rr(o);
        if (r.connected == 0) {
            return nothing("connection", ctx.target, r.errors);
        }
        print_rr(stdout, ctx, r);
        return r.responses > 0 ? 0 : 1;
    }
    if (a.mode == "connrate") {
        const ConnrateResult r = run_connrate(o);
        print_connrate(stdout, ctx, r);
        if (r.ok == 0) {
            return nothing("connection", ctx.target, r.errors);
        }
        return 0;
    }
    ErrorCounts e{};
    const int held = run_hold(o, e, g_stop);
    if (total(e) != 0) {
        std::fprintf(stderr, "tpbench: hold errors: %s\n", errors_text(e).c_str());
    }
    if (held == 0) {
        return nothing("connection", ctx.target, e);
    }
    return 0;
}
