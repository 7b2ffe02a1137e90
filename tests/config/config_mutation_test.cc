// Mutated rule sets (B2 in reliability.md, in small): thousands of deterministic byte-level
// mutations of the golden files. Each must be either rejected with positioned diagnostics or
// accepted with a batch whose text stays inside the generator's alphabet (nothing smuggled in:
// no `;`, `#`, stray quotes or braces from input values). With TP_MUTATION_OUT=DIR the
// accepted batches are written there for libnftables' check mode (mutation_nft_check.sh).

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "config/load.h"

namespace tp::config {
namespace {

namespace fs = std::filesystem;

// Characters a generated batch may contain (`&` and `|` only in mark arithmetic); input values
// are limited far more tightly.
bool batch_is_clean(const std::string& batch) {
    for (char c : batch) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  std::string_view(" \t\n_.-:/,@{}[]\"+!=;&|").find(c) != std::string_view::npos;
        if (!ok) {
            return false;
        }
    }
    // Quotes only around interface and counter names, in pairs per line; `;` only in chain
    // headers.
    std::istringstream in(batch);
    std::string line;
    while (std::getline(in, line)) {
        if (std::count(line.begin(), line.end(), '"') % 2 != 0) {
            return false;
        }
        if (line.find(';') != std::string::npos && line.rfind("\t\ttype ", 0) != 0) {
            return false;
        }
        if (line.find_first_of("&|") != std::string::npos &&
            line.find("meta mark set meta mark & ") == std::string::npos) {
            return false;
        }
    }
    return true;
}

TEST(ConfigMutation, RejectedOrClean) {
    const char* tokens[] = {"\"", ";",    "}",   "{",   "#",  "\n", ":",     "- ",
                            "*a", "&a ",  "0x",  "/33", "/0", "-",  "\t",    "\xff",
                            "no", "true", "''",  "[",   "]",  "0",  "65536", "lan0\"",
                            "@x", "::",   "1e3", "\\n", ",",  " ",  "!!",    "---\n"};
    std::vector<std::string> seeds;
    for (const auto& e : fs::directory_iterator(TP_GOLDEN_DIR)) {
        if (e.path().extension() == ".yaml") {
            std::ifstream in(e.path());
            std::ostringstream ss;
            ss << in.rdbuf();
            seeds.push_back(ss.str());
        }
    }
    ASSERT_FALSE(seeds.empty());
    std::mt19937 rng(20261129);
    int accepted = 0, rejected = 0;
    const char* out_dir = std::getenv("TP_MUTATION_OUT");
    std::set<std::string> written;
    for (int i = 0; i < 4000; ++i) {
        std::string y = seeds[rng() % seeds.size()];
        int edits = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < edits && !y.empty(); ++k) {
            size_t at = rng() % y.size();
            switch (rng() % 3) {
                case 0:  // insert a token
                    y.insert(at, tokens[rng() % std::size(tokens)]);
                    break;
                case 1:  // delete a few bytes
                    y.erase(at, 1 + rng() % 4);
                    break;
                default:  // flip a byte
                    y[at] = static_cast<char>(rng() % 256);
                    break;
            }
        }
        LoadResult r = load_config_text(y, "m.yaml");
        if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
            ++rejected;
            ASSERT_FALSE(d->empty());
            for (const Diagnostic& x : *d) {
                ASSERT_FALSE(x.message.empty()) << y;
            }
        } else {
            ++accepted;
            const LoadedConfig& c = std::get<LoadedConfig>(r);
            // For the netns oracle (mutation_nft_check.sh): keep each distinct batch.
            if (out_dir != nullptr && written.insert(c.kernel.nft_batch).second) {
                std::ofstream(std::string(out_dir) + "/mut-" + std::to_string(i) + ".nft")
                    << c.kernel.nft_batch;
            }
            ASSERT_TRUE(batch_is_clean(c.kernel.nft_batch)) << "input:\n"
                                                            << y << "\nbatch:\n"
                                                            << c.kernel.nft_batch;
        }
    }
    std::printf("mutations: %d accepted, %d rejected\n", accepted, rejected);
    EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace tp::config
