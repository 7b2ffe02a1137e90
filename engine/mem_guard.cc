// MemGuard: the cgroup's memory limit and usage (v2 and v1), or an explicit limit.
#include "engine/mem_guard.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace tp::engine {
namespace {

// The memory cgroup's directory: v2 ("0::/path", with memory.current there) or v1
// ("N:...memory...:/path" under /sys/fs/cgroup/memory).
bool cgroup_dir(std::string& dir, bool& v2) {
    FILE* f = std::fopen("/proc/self/cgroup", "re");
    if (f == nullptr) {
        return false;
    }
    char line[1024];
    std::string v1_path;
    std::string v2_path;
    while (std::fgets(line, sizeof line, f) != nullptr) {
        std::string l(line);
        if (!l.empty() && l.back() == '\n') {
            l.pop_back();
        }
        size_t a = l.find(':');
        size_t b = a == std::string::npos ? a : l.find(':', a + 1);
        if (b == std::string::npos) {
            continue;
        }
        std::string ctrl = l.substr(a + 1, b - a - 1);
        std::string path = l.substr(b + 1);
        if (ctrl.empty() && l.compare(0, a, "0") == 0) {
            v2_path = path;
        } else if (("," + ctrl + ",").find(",memory,") != std::string::npos) {
            v1_path = path;
        }
    }
    std::fclose(f);
    if (!v2_path.empty() &&
        access(("/sys/fs/cgroup" + v2_path + "/memory.current").c_str(), R_OK) == 0) {
        dir = "/sys/fs/cgroup" + v2_path;
        v2 = true;
        return true;
    }
    if (!v1_path.empty() &&
        access(("/sys/fs/cgroup/memory" + v1_path + "/memory.usage_in_bytes").c_str(), R_OK) == 0) {
        dir = "/sys/fs/cgroup/memory" + v1_path;
        v2 = false;
        return true;
    }
    return false;
}

uint64_t read_u64(int fd) {
    char buf[64];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    return std::strtoull(buf, nullptr, 10);
}

uint64_t read_limit(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        return 0;
    }
    char buf[64];
    ssize_t n = pread(fd.get(), buf, sizeof buf - 1, 0);
    if (n <= 0 || std::strncmp(buf, "max", 3) == 0) {
        return 0;
    }
    buf[n] = '\0';
    uint64_t v = std::strtoull(buf, nullptr, 10);
    return v >= (1ull << 60) ? 0 : v;  // v1 writes "no limit" as a huge number
}

}  // namespace

void MemGuard::init(uint64_t explicit_limit) {
    std::string dir;
    bool v2 = false;
    if (cgroup_dir(dir, v2)) {
        usage_fd_.reset(open((dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes")).c_str(),
                             O_RDONLY | O_CLOEXEC));
    }
    uint64_t cg =
        dir.empty() ? 0 : read_limit(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
    if (explicit_limit != 0) {
        limit_ = cg != 0 && cg < explicit_limit ? cg : explicit_limit;
        source_ = limit_ == explicit_limit ? "memory_limit" : (v2 ? "cgroup v2" : "cgroup v1");
    } else {
        limit_ = cg;
        source_ = cg == 0 ? "none" : (v2 ? "cgroup v2" : "cgroup v1");
    }
    // Without a cgroup limit, the cgroup's usage may be other processes' too: count our RSS
    // (socket buffers are then not seen; docs/config.md says so).
    rss_ = !usage_fd_.valid() || cg == 0;
}

uint64_t MemGuard::usage() const {
    if (!rss_) {
        return read_u64(usage_fd_.get());
    }
    UniqueFd fd(open("/proc/self/statm", O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        return 0;
    }
    char buf[128];
    ssize_t n = pread(fd.get(), buf, sizeof buf - 1, 0);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    unsigned long long size = 0;
    unsigned long long resident = 0;
    if (std::sscanf(buf, "%llu %llu", &size, &resident) != 2) {
        return 0;
    }
    return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace tp::engine
