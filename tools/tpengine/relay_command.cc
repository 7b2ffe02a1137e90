#include <cstdio>

#include "tools/tpengine/commands.h"

namespace tp::tools {

// Placeholder: replaced by the real front end.
int relay_main(int, char**) {
    std::fprintf(stderr, "tpengine: not built yet\n");
    return 2;
}

}  // namespace tp::tools
