// Golden tests: each golden/<case>.yaml gives exactly golden/<case>.nft and <case>.routes.
// The 100,000-CIDR case builds its @file list at test time and compares its batch compacted.
// TP_UPDATE_GOLDEN=1 rewrites the goldens instead of comparing.

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "config/load.h"
#include "config/nft_bigsets.h"

namespace tp::config {
namespace {

namespace fs = std::filesystem;

bool updating() {
    const char* v = std::getenv("TP_UPDATE_GOLDEN");
    return v != nullptr && std::string(v) == "1";
}

std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void compare(const fs::path& golden, const std::string& actual) {
    if (updating()) {
        std::ofstream(golden, std::ios::binary) << actual;
        return;
    }
    ASSERT_TRUE(fs::exists(golden)) << golden << " is missing; run with TP_UPDATE_GOLDEN=1";
    std::string expected = read(golden);
    if (expected != actual) {
        // First differing line, so a failure says where.
        std::istringstream a(actual), e(expected);
        std::string la, le;
        int line = 0;
        while (true) {
            ++line;
            bool ga = static_cast<bool>(std::getline(a, la));
            bool ge = static_cast<bool>(std::getline(e, le));
            if (!ga && !ge) {
                break;
            }
            if (la != le || ga != ge) {
                ADD_FAILURE() << golden.string() << ":" << line << ": expected\n  " << le
                              << "\ngot\n  " << la;
                return;
            }
        }
        ADD_FAILURE() << golden << " differs (line endings?)";
    }
}

void check_case(const fs::path& yaml, const LoadResult& r) {
    SCOPED_TRACE(yaml.string());
    if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
        ADD_FAILURE() << "rejected: " << (*d)[0].format();
        return;
    }
    const LoadedConfig& c = std::get<LoadedConfig>(r);
    fs::path base = fs::path(TP_GOLDEN_DIR) / yaml.stem();
    compare(base.string() + ".nft", c.kernel.nft_batch);
    compare(base.string() + ".routes", routes_text(c.kernel));
}

TEST(ConfigGolden, EveryCase) {
    std::vector<fs::path> cases;
    for (const auto& e : fs::directory_iterator(TP_GOLDEN_DIR)) {
        if (e.path().extension() == ".yaml") {
            cases.push_back(e.path());
        }
    }
    std::sort(cases.begin(), cases.end());
    EXPECT_GE(cases.size(), 10u);
    for (const fs::path& p : cases) {
        check_case(p, load_config_file(p.string()));
    }
}

// 100,000 non-adjacent /32s (every other address from 100.64.0.0) plus some IPv6 /64s, as an
// @file list: one set per family, one lookup each (the hosts-only IPv4 list a hash set of its
// size, the IPv6 /64s an interval set).
TEST(ConfigGolden, HundredThousandCidrs) {
    char dir_template[] = "/tmp/tpcfg-golden-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    fs::path dir = dir_template;
    {
        std::ofstream list(dir / "big-list.txt");
        list << "# generated: 100,000 IPv4 hosts and 1,000 IPv6 /64s\n";
        uint32_t base = (100u << 24) | (64u << 16);
        for (uint32_t i = 0; i < 100'000; ++i) {
            uint32_t a = base + 2 * i;
            list << (a >> 24) << '.' << ((a >> 16) & 255) << '.' << ((a >> 8) & 255) << '.'
                 << (a & 255) << '\n';
        }
        char buf[64];
        for (unsigned i = 0; i < 1000; ++i) {
            std::snprintf(buf, sizeof buf, "2001:db8:%x:%x::/64\n", i / 256, i % 256);
            list << buf;
        }
    }
    std::string yaml = R"(# big-list: a 100,000-entry destination list kept out of the proxy
listeners:
  - name: web
    port: 50080
rules:
  - name: not-these
    destinations: "@big-list.txt"
    action: bypass
  - name: lan
    interfaces: [lan0]
    action: tproxy
    listener: web
)";
    auto start = std::chrono::steady_clock::now();
    LoadResult r = load_config_text(yaml, (dir / "big-list.yaml").string());
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    // Reported, not asserted: the machine is shared and noisy.
    std::printf("load + generate of 101,000 CIDRs: %lld ms\n", static_cast<long long>(ms));
    // Compared compacted (nft_bigsets.h): every line but the big set's 100,000 elements, which
    // are there as their count and a 128-bit hash of their exact text. The full golden would
    // be a committed 100,000-line file.
    if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
        ADD_FAILURE() << "rejected: " << (*d)[0].format();
    } else {
        const LoadedConfig& c = std::get<LoadedConfig>(r);
        fs::path base = fs::path(TP_GOLDEN_DIR) / "big-list";
        std::string compact = compact_batch(c.kernel.nft_batch);
        EXPECT_NE(compact.find("\t\t\t# 100000 elements, hash "), std::string::npos);
        compare(base.string() + ".compact", compact);
        compare(base.string() + ".routes", routes_text(c.kernel));
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace tp::config
