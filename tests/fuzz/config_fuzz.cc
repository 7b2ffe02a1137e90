// libFuzzer target over the rule-set pipeline: YAML text -> parse -> validate -> nft batch and
// policy routing. Its oracle: every input is either rejected with positioned diagnostics, or
// its generated batch is accepted by libnftables' check mode (run it in a scratch network
// namespace as root: tests/fuzz/run_fuzz.sh does). Built only with -DTP_FUZZ=ON (clang).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <variant>

#include "config/load.h"
#include "config/nft_apply.h"

namespace {

// Whole-file problems are the only diagnostics without a line.
bool whole_file(const tp::config::Diagnostic& d) {
    return d.message == "the file is empty" || d.message == "file is larger than 16 MiB";
}

[[noreturn]] void finding(const std::string& what, const std::string& input) {
    std::fprintf(stderr, "config_fuzz: %s\n--- input ---\n%s\n--- end ---\n", what.c_str(),
                 input.c_str());
    std::abort();
}

tp::config::NftContext* nft() {
    static std::unique_ptr<tp::config::NftContext> ctx = [] {
        std::string err;
        auto c = tp::config::NftContext::create(&err);
        if (!c || c->table_state("tpengine") == -EPERM) {
            std::fprintf(stderr,
                         "config_fuzz: no nftables check mode here (%s); accepted "
                         "batches are not checked\n",
                         c ? "no CAP_NET_ADMIN" : err.c_str());
            return std::unique_ptr<tp::config::NftContext>();
        }
        return c;
    }();
    return ctx.get();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    // `@file` lists resolve against the golden directory (bypass-sets.txt and friends).
    tp::config::LoadResult r = tp::config::load_config_text(text, TP_GOLDEN_DIR "/fuzz.yaml");
    if (auto* diags = std::get_if<std::vector<tp::config::Diagnostic>>(&r)) {
        if (diags->empty()) {
            finding("rejected without a diagnostic", text);
        }
        for (const tp::config::Diagnostic& d : *diags) {
            if (d.message.empty() || (d.line <= 0 && !whole_file(d)) || d.column < 0) {
                finding("a diagnostic without a position or reason: " + d.format(), text);
            }
        }
        return 0;
    }
    const tp::config::LoadedConfig& c = std::get<tp::config::LoadedConfig>(r);
    (void)tp::config::routes_text(c.kernel);
    if (tp::config::NftContext* ctx = nft()) {
        std::string err = ctx->run(c.kernel.nft_batch, /*check_only=*/true);
        if (!err.empty()) {
            finding("accepted, but libnftables' check mode rejects the batch:\n" + err, text);
        }
    }
    return 0;
}
