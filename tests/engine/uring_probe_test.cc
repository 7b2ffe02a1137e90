// The io_uring probe: its messages name the cause and the remedy for each way io_uring can be
// unavailable, and on this machine it either passes or says exactly what is missing.
#include "engine/uring_probe.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace tp::engine {
namespace {

TEST(UringProbe, SysctlTwoIsNamed) {
    std::string m = uring_setup_failure(EPERM, 2);
    EXPECT_NE(m.find("kernel.io_uring_disabled is 2"), std::string::npos) << m;
    EXPECT_NE(m.find("sysctl -w kernel.io_uring_disabled=0"), std::string::npos) << m;
}

TEST(UringProbe, SysctlOneNamesTheGroup) {
    std::string m = uring_setup_failure(EPERM, 1);
    EXPECT_NE(m.find("kernel.io_uring_disabled is 1"), std::string::npos) << m;
    EXPECT_NE(m.find("kernel.io_uring_group"), std::string::npos) << m;
}

TEST(UringProbe, EpermWithoutSysctlIsSeccomp) {
    for (int sysctl : {-1, 0}) {
        std::string m = uring_setup_failure(EPERM, sysctl);
        EXPECT_NE(m.find("seccomp"), std::string::npos) << m;
        EXPECT_EQ(m.find("io_uring_disabled"), std::string::npos) << m;
    }
}

TEST(UringProbe, EnosysNamesKernelOptionAndSeccomp) {
    std::string m = uring_setup_failure(ENOSYS, -1);
    EXPECT_NE(m.find("CONFIG_IO_URING"), std::string::npos) << m;
    EXPECT_NE(m.find("seccomp"), std::string::npos) << m;
}

TEST(UringProbe, EveryMessageSaysWhatIsUnavailable) {
    for (int err : {EPERM, ENOSYS, ENOMEM, EINVAL, EMFILE}) {
        std::string m = uring_setup_failure(err, 0);
        EXPECT_EQ(m.rfind("io_uring is not available (io_uring_setup: ", 0), 0u) << m;
    }
}

// Here (a 6.x kernel) the probe passes; where io_uring is missing (qemu-user: ENOSYS) each
// problem still names a kernel, a sysctl or seccomp.
TEST(UringProbe, ThisMachine) {
    UringProbe p = probe_uring();
    for (const std::string& why : p.problems) {
        bool named = why.find("Linux") != std::string::npos ||
                     why.find("sysctl") != std::string::npos ||
                     why.find("seccomp") != std::string::npos;
        EXPECT_TRUE(named) << why;
    }
    if (!p.ok()) {
        GTEST_SKIP() << "io_uring is not usable here: " << p.problems.front();
    }
}

}  // namespace
}  // namespace tp::engine
