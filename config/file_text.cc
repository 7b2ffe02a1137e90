// Reading a whole small input file with plain read(2) (see file_text.h).

#include "config/file_text.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "config/scoped_fd.h"
#include "config/yaml_tree.h"

namespace tp::config {

namespace {

FileRead sys_error() {
    return {FileRead::Status::sys_error, errno};
}

}  // namespace

FileRead read_file_text(const std::string& path, std::string& text) {
    text.clear();
    ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        return sys_error();
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return sys_error();
    }
    if (!S_ISREG(st.st_mode)) {
        return {FileRead::Status::not_regular, 0};
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes) {
        return {FileRead::Status::too_large, 0};
    }
    text.reserve(static_cast<size_t>(st.st_size));
    char buf[65536];
    for (;;) {
        ssize_t got = ::read(fd.get(), buf, sizeof buf);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            text.clear();
            return sys_error();
        }
        if (got == 0) {
            return {};
        }
        text.append(buf, static_cast<size_t>(got));
        if (text.size() > kMaxFileBytes) {  // grew while being read
            text.clear();
            return {FileRead::Status::too_large, 0};
        }
    }
}

}  // namespace tp::config
