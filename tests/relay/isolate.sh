#!/bin/sh
# Runs one socket test in a network namespace of its own when it can (root), so the tests can run
# side by side (ctest -j) without sharing ports, and no test's leak check sees another's sockets.
# Without root (or where namespaces are refused) the test runs as it is, in the caller's namespace.
if [ "$(id -u)" -eq 0 ] && unshare --net true 2>/dev/null; then
    exec unshare --net sh -c 'ip link set lo up && exec "$@"' isolate "$@"
fi
exec "$@"
