#!/usr/bin/env bash
# One entry point for people and CI.
#   tools/run.sh demo   install what is missing, build, run the three-host lab demo
#   tools/run.sh test   install what is missing, build, run every test (+ ASan/UBSan unit tests)
#   tools/run.sh build  build only (build/)
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
# Tests mostly wait (on timeouts, peers, the kernel), and each socket, apply and e2e test has
# network namespaces of its own, so ctest runs more of them at once than there are cores; the
# few that measure memory or timing are RUN_SERIAL in their CMakeLists.
test_jobs=$((jobs * 2 > 4 ? jobs * 2 : 4))

build() {  # build DIR [cmake args...]
    local dir=$1
    shift
    cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
}

case "${1:-}" in
demo)
    tools/install-deps.sh
    build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_WERROR=ON -DCMAKE_INSTALL_PREFIX=/usr
    exec tools/lab/demo.sh build/tools/tpengine/tpengine
    ;;
test)
    tools/install-deps.sh
    # Sanitizer build first: the unit and golden tests, and the relay's loopback socket tests
    # (they drive the paths unit tests cannot), under ASan+UBSan.
    build build-asan -DCMAKE_BUILD_TYPE=Debug -DTP_SANITIZE=ON -DTP_BUILD_BENCH=OFF -DTP_WERROR=ON
    (cd build-asan && ctest -L 'unit|golden' --output-on-failure -j "$jobs")
    (cd build-asan && ctest -L socket -R '^relay\.' --output-on-failure -j "$test_jobs")
    # Then everything, in the release build: unit, golden, socket, apply, e2e, bench smoke.
    build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_WERROR=ON -DCMAKE_INSTALL_PREFIX=/usr
    cd build && exec ctest --output-on-failure -j "$test_jobs"
    ;;
build)
    tools/install-deps.sh
    build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_WERROR=ON -DCMAKE_INSTALL_PREFIX=/usr
    ;;
*)
    echo "usage: tools/run.sh demo|test|build" >&2
    exit 2
    ;;
esac
