#!/usr/bin/env bash
# The .deb: build it with cpack from this build tree, compare its files with
# expected-contents.txt, check its control data (conffile, computed dependencies, maintainer
# scripts), run lintian (no errors; every warning explained in packaging/README.md), unpack
# it into a scratch root and run the installed `tpengine --check` on the shipped
# /etc/tpengine/proxy.yaml in a private network namespace.
# usage: deb.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
if [ "$prefix" != /usr ]; then
    echo "SKIP: this build installs to $prefix; the package needs -DCMAKE_INSTALL_PREFIX=/usr (tools/run.sh sets it)"
    exit 77
fi
for tool in dpkg-deb dpkg-shlibdeps lintian; do
    command -v $tool >/dev/null || { echo "FAIL: $tool missing (tools/install-deps.sh installs it)"; exit 1; }
done
work=$(mktemp -d /tmp/tp-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

(cd "$work" && cpack --config "$build/CPackConfig.cmake" -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) ||
    { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/out/tpengine_*.deb)
echo "built $(basename "$deb")"

dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sort >"$work/contents.txt"
# The fixed set, plus every example rule set of the source tree.
{
    cat "$src/tests/package/expected-contents.txt"
    for f in "$src"/config/examples/*.yaml; do
        echo "./usr/share/doc/tpengine/examples/$(basename "$f")"
    done
} | sort >"$work/expected.txt"
if ! diff -u "$work/expected.txt" "$work/contents.txt"; then
    fail "package contents differ from tests/package/expected-contents.txt + config/examples (above)"
fi

dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/tpengine/proxy.yaml "$work/control/conffiles" || fail "proxy.yaml is not a conffile"
for s in postinst prerm postrm; do
    [ -x "$work/control/$s" ] || fail "maintainer script $s missing"
done
depends=$(sed -n 's/^Depends: //p' "$work/control/control")
echo "Depends: $depends"
for lib in libc6 liburing2 libnftables1 libyaml-cpp0.7 libmimalloc2.0 libmnl0 libstdc++6; do
    grep -q "\b$lib\b" <<<"$depends" || fail "Depends lacks $lib (shlibdeps not computed?)"
done

lintian --no-tag-display-limit "$deb" >"$work/lintian.txt" 2>&1 || true
cat "$work/lintian.txt"
if grep -q '^E: ' "$work/lintian.txt"; then
    fail "lintian reports errors"
fi
while read -r tag; do
    grep -qF "$tag" "$src/packaging/README.md" ||
        fail "lintian warning $tag is not explained in packaging/README.md"
done < <(sed -n 's/^W: [^:]*: \([a-z0-9-]*\).*/\1/p' "$work/lintian.txt" | sort -u)

root=$work/root
dpkg-deb -x "$deb" "$root"
# The installed binary, with the shipped file, in a namespace of its own (lo only).
out=$(unshare --net sh -c "ip link set lo up && '$root/usr/sbin/tpengine' -c '$root/etc/tpengine/proxy.yaml' --check" 2>&1) ||
    fail "installed tpengine --check on the shipped proxy.yaml: $out"
# Warnings about this machine (its file-descriptor limit, say) may follow on stderr.
grep -q '^configuration valid' <<<"$out" || fail "unexpected --check output: $out"
# And it intercepts nothing: no rule in what it would apply.
if "$root/usr/sbin/tpengine" -c "$root/etc/tpengine/proxy.yaml" --dry-run | grep -qE 'tproxy|redirect|dnat'; then
    fail "the shipped proxy.yaml intercepts traffic"
fi
echo ok
