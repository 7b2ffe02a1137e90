// tpengine: `tpengine relay ...` (tcprdr-compatible) or `tpengine -c FILE ...` (rule set).
#include <cstring>

#include "tools/tpengine/commands.h"
#include "tools/tpengine/serve.h"

int main(int argc, char** argv) {
    tp::tools::block_control_signals();
    if (argc >= 2 && std::strcmp(argv[1], "relay") == 0) {
        return tp::tools::relay_main(argc - 1, argv + 1);
    }
    if (argc >= 2 && std::strcmp(argv[1], "ctl") == 0) {
        return tp::tools::ctl_main(argc - 1, argv + 1);
    }
    return tp::tools::config_main(argc, argv);
}
