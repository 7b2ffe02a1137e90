// Capability and user switching with raw system calls (capget/capset, prctl, setresuid).
#include "tools/tpengine/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tp::tools {
namespace {

constexpr uint64_t bit(int cap) {
    return uint64_t{1} << cap;
}

struct CapSets {
    uint64_t effective = 0, permitted = 0, inheritable = 0;
};

bool cap_get(CapSets& out) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capget, &hdr, data) != 0) {
        return false;
    }
    out.effective = data[0].effective | (uint64_t{data[1].effective} << 32);
    out.permitted = data[0].permitted | (uint64_t{data[1].permitted} << 32);
    out.inheritable = data[0].inheritable | (uint64_t{data[1].inheritable} << 32);
    return true;
}

bool cap_set(const CapSets& s) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    data[0].effective = static_cast<uint32_t>(s.effective);
    data[1].effective = static_cast<uint32_t>(s.effective >> 32);
    data[0].permitted = static_cast<uint32_t>(s.permitted);
    data[1].permitted = static_cast<uint32_t>(s.permitted >> 32);
    data[0].inheritable = static_cast<uint32_t>(s.inheritable);
    data[1].inheritable = static_cast<uint32_t>(s.inheritable >> 32);
    return syscall(SYS_capset, &hdr, data) == 0;
}

int last_cap() {
    int last = CAP_LAST_CAP;
    if (FILE* f = std::fopen("/proc/sys/kernel/cap_last_cap", "re")) {
        if (std::fscanf(f, "%d", &last) != 1) {
            last = CAP_LAST_CAP;
        }
        std::fclose(f);
    }
    return last < 63 ? last : 63;
}

bool numeric_id(const std::string& s, unsigned& out) {
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno != 0 || v > 0xFFFFFFFEul) {
        return false;
    }
    out = static_cast<unsigned>(v);
    return true;
}

std::string errno_text() {
    return std::strerror(errno);
}

}  // namespace

uint64_t needed_capabilities(const plan::Plan& plan, bool reloadable) {
    uint64_t caps = 0;
    if (reloadable || plan.bypass_mark != 0) {
        caps |= bit(CAP_NET_ADMIN) | bit(CAP_NET_RAW);
    }
    for (const plan::Listener& l : plan.listeners) {
        if (l.transparent || l.source != plan::SourceMode::proxy) {
            caps |= bit(CAP_NET_ADMIN) | bit(CAP_NET_RAW);
        }
        uint16_t port = 0;
        if (l.address.family() == AF_INET) {
            port = ntohs(reinterpret_cast<const sockaddr_in*>(&l.address.storage)->sin_port);
        } else if (l.address.family() == AF_INET6) {
            port = ntohs(reinterpret_cast<const sockaddr_in6*>(&l.address.storage)->sin6_port);
        }
        if ((port != 0 && port < 1024) || l.source == plan::SourceMode::client_port) {
            caps |= bit(CAP_NET_BIND_SERVICE);
        }
        // Transparent UDP replies leave from sockets bound to the original destination's port
        // (53, 123, 443...), and through a raw socket when that port is held locally.
        if (l.protocol != plan::Protocol::tcp && l.transparent) {
            caps |= bit(CAP_NET_BIND_SERVICE) | bit(CAP_NET_RAW);
        }
    }
    return caps;
}

std::string capability_names(uint64_t caps) {
    struct Name {
        int cap;
        const char* name;
    };
    static constexpr Name kNames[] = {{CAP_NET_ADMIN, "cap_net_admin"},
                                      {CAP_NET_RAW, "cap_net_raw"},
                                      {CAP_NET_BIND_SERVICE, "cap_net_bind_service"}};
    std::string s;
    for (const Name& n : kNames) {
        if (caps & bit(n.cap)) {
            s += (s.empty() ? "" : ",") + std::string(n.name);
            caps &= ~bit(n.cap);
        }
    }
    for (int c = 0; c < 64; ++c) {
        if (caps & bit(c)) {
            s += (s.empty() ? "cap_" : ",cap_") + std::to_string(c);
        }
    }
    return s.empty() ? "none" : s;
}

std::string drop_privileges(const PrivilegeRequest& req) {
    CapSets had;
    if (!cap_get(had)) {
        return "cannot read the capabilities: " + errno_text();
    }
    // Who to become, resolved before anything changes.
    bool switch_user = false;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (!req.user.empty()) {
        unsigned id = 0;
        if (const passwd* pw = getpwnam(req.user.c_str())) {
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        } else if (numeric_id(req.user, id)) {
            uid = id;
            const passwd* byid = getpwuid(uid);
            gid = byid ? byid->pw_gid : static_cast<gid_t>(id);
        } else {
            return "user: no user `" + req.user + "` on this system";
        }
    }
    if (!req.group.empty()) {
        unsigned id = 0;
        if (const group* gr = getgrnam(req.group.c_str())) {
            gid = gr->gr_gid;
        } else if (numeric_id(req.group, id)) {
            gid = id;
        } else {
            return "group: no group `" + req.group + "` on this system";
        }
    }
    switch_user = uid != geteuid() || gid != getegid();

    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes below. Without
    // CAP_SETPCAP (a service manager already bounded us) this step is skipped.
    if (had.effective & bit(CAP_SETPCAP)) {
        for (int c = 0; c <= last_cap(); ++c) {
            if (!(req.keep & bit(c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 &&
                errno != EINVAL) {
                return "cannot drop capability " + std::to_string(c) +
                       " from the bounding set: " + errno_text();
            }
        }
    }
    if (switch_user) {
        // KEEPCAPS: the permitted set survives the change of user id (effective is cleared and
        // set again below).
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
            return "PR_SET_KEEPCAPS: " + errno_text();
        }
        if (setgroups(1, &gid) != 0 || setresgid(gid, gid, gid) != 0) {
            return "cannot switch to group " + std::to_string(gid) + ": " + errno_text() +
                   " (needs root or CAP_SETGID)";
        }
        if (setresuid(uid, uid, uid) != 0) {
            return "cannot switch to user " + std::to_string(uid) + ": " + errno_text() +
                   " (needs root or CAP_SETUID)";
        }
        (void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    // Ambient capabilities only matter across exec, which tpengine never does.
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    CapSets want;
    want.permitted = had.permitted & req.keep;
    want.effective = want.permitted;
    want.inheritable = 0;
    if (!cap_set(want)) {
        return "cannot reduce the capabilities to " + capability_names(want.permitted) + ": " +
               errno_text();
    }
    CapSets now;
    if (!cap_get(now) || now.permitted != want.permitted || now.effective != want.effective) {
        return "the capabilities did not drop as asked";
    }
    // No exec of ours may ever gain privileges back (set-uid binaries, file capabilities).
    (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return {};
}

}  // namespace tp::tools
