// `tpengine ctl`: the control socket's client. Sends one request line, prints the answer;
// exits 0 when the server answered OK, 1 on ERR (so `ExecReload=tpengine ctl reload` fails
// when the new file is bad), 2 on usage errors or when the socket cannot be reached.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/unique_fd.h"
#include "tools/tpengine/commands.h"

namespace tp::tools {
namespace {

const char kUsage[] =
    "usage: tpengine ctl COMMAND [--json] [--socket PATH]\n"
    "  status                       version, uptime, workers, listeners and their counters,\n"
    "                               rule counters, the last reload's outcome\n"
    "  connections [--listener NAME] [--limit N]\n"
    "                               live connections: client, original destination, upstream,\n"
    "                               age, bytes each way, state, worker\n"
    "  reload                       reload the file; answers ok or the errors (exit 1)\n"
    "  stop                         graceful stop (as SIGTERM)\n"
    "  --socket PATH                control socket (default /run/tpengine/control.sock)\n"
    "  --json                       answer in JSON\n";

int usage(const std::string& why) {
    std::fprintf(stderr, "tpengine ctl: %s\n%s", why.c_str(), kUsage);
    return 2;
}

}  // namespace

int ctl_main(int argc, char** argv) {
    std::string path = "/run/tpengine/control.sock";
    std::string request;
    std::string cmd;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        if (a == "--socket" || a == "--listener" || a == "--limit") {
            if (i + 1 >= argc) {
                return usage(a + " needs a value");
            }
            std::string v = argv[++i];
            if (v.empty() || v.find_first_of(" \t\n") != std::string::npos) {
                return usage(a + ": bad value `" + v + "`");
            }
            if (a == "--socket") {
                path = v;
            } else {
                request += " " + a + " " + v;
            }
        } else if (a == "--json") {
            request += " --json";
        } else if (cmd.empty() &&
                   (a == "status" || a == "connections" || a == "reload" || a == "stop")) {
            cmd = a;
        } else {
            return usage("unknown argument `" + a + "`");
        }
    }
    if (cmd.empty()) {
        return usage("no command given");
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        return usage("socket path too long");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    engine::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::fprintf(stderr, "tpengine ctl: cannot reach %s: %s\n", path.c_str(),
                     std::strerror(errno));
        return 2;
    }
    timeval tv{90, 0};  // a reload of a large rule set takes a while
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string line = cmd + request + "\n";
    if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(line.size())) {
        std::fprintf(stderr, "tpengine ctl: send: %s\n", std::strerror(errno));
        return 2;
    }
    std::string answer;
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n <= 0) {
            break;
        }
        answer.append(buf, static_cast<size_t>(n));
    }
    size_t nl = answer.find('\n');
    std::string status = answer.substr(0, nl);
    std::string body = nl == std::string::npos ? "" : answer.substr(nl + 1);
    if (status == "OK") {
        std::fputs(body.c_str(), stdout);
        return 0;
    }
    if (status == "ERR") {
        std::fputs(body.c_str(), stderr);
        return 1;
    }
    std::fprintf(stderr, "tpengine ctl: no answer from %s\n", path.c_str());
    return 2;
}

}  // namespace tp::tools
