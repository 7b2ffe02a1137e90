// Test driver for tp_config_apply without the loader or the engine: builds a KernelSetup from
// the command line and applies, replaces, sweeps or checks it.
//   apply_driver apply|sweep|check|replace --table T --batch FILE [--mark M --mask K
//                --rt-table N --priority P] [--fail-at STEP] [--next-batch F --next-table T2
//                --next-rt-table N2]
// Exit 0 on success, 1 on failure (message on stderr).
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "config/cleanup.h"
#include "config/kernel_apply.h"

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

tp::config::KernelSetup make_setup(const std::string& table, const std::string& batch_file,
                                   uint32_t mark, uint32_t mask, uint32_t rt, uint32_t prio) {
    tp::config::KernelSetup s;
    s.nft_table = table;
    s.nft_batch = batch_file.empty() ? "" : read_file(batch_file);
    for (int family : {AF_INET, AF_INET6}) {
        s.routes.push_back({family, rt});
        s.rules.push_back({family, mark, mask, rt, prio});
    }
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: apply_driver apply|sweep|check|replace OPTIONS\n");
        return 2;
    }
    std::string mode = argv[1];
    std::string table = "tpengine", batch, fail_at, next_batch, next_table;
    uint32_t mark = 1, mask = 1, rt = 100, prio = 100, next_rt = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        uint32_t n = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 0));
        if (k == "--table")
            table = v;
        else if (k == "--batch")
            batch = v;
        else if (k == "--mark")
            mark = n;
        else if (k == "--mask")
            mask = n;
        else if (k == "--rt-table")
            rt = n;
        else if (k == "--priority")
            prio = n;
        else if (k == "--fail-at")
            fail_at = v;
        else if (k == "--next-batch")
            next_batch = v;
        else if (k == "--next-table")
            next_table = v;
        else if (k == "--next-rt-table")
            next_rt = n;
        else {
            std::fprintf(stderr, "apply_driver: unknown option %s\n", k.c_str());
            return 2;
        }
    }
    std::string err;
    auto applier = tp::config::KernelApplier::open(&err);
    if (!applier) {
        std::fprintf(stderr, "apply_driver: %s\n", err.c_str());
        return 1;
    }
    applier->set_log([](const std::string& line) { std::fprintf(stderr, "  %s\n", line.c_str()); });
    applier->set_fail_at(fail_at);
    auto setup = make_setup(table, batch, mark, mask, rt, prio);
    if (mode == "apply") {
        err = applier->apply(setup);
    } else if (mode == "check") {
        err = applier->nft().run(setup.nft_batch, true);
    } else if (mode == "sweep") {
        tp::config::SweepResult r = applier->remove(setup);
        std::printf("removed: %s\n", r.summary().c_str());
        err = r.errors;
    } else if (mode == "replace") {
        auto next = make_setup(next_table.empty() ? table : next_table,
                               next_batch.empty() ? batch : next_batch, mark, mask,
                               next_rt != 0 ? next_rt : rt, prio);
        err = applier->replace(setup, next);
    } else {
        std::fprintf(stderr, "apply_driver: unknown mode %s\n", mode.c_str());
        return 2;
    }
    if (!err.empty()) {
        std::fprintf(stderr, "apply_driver: %s\n", err.c_str());
        return 1;
    }
    return 0;
}
