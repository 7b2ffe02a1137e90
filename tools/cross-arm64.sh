#!/usr/bin/env bash
# Cross-builds tpengine for arm64 (aarch64) with Debian 12's multiarch toolchain, runs the unit
# tests under qemu-user-static, and prints the stripped binary sizes of both architectures.
#   tools/cross-arm64.sh            (as root: installs what is missing first)
# Output: build-arm64/ (the build), build-arm64/summary.txt (tests and sizes).
#
# It changes the machine's apt set-up (dpkg --add-architecture arm64), so it is not part of
# tools/install-deps.sh or `tools/run.sh test`. Only arm64 packages that are co-installable
# with their amd64 twins (Multi-Arch: same) are installed; libyaml-cpp-dev is not (installing
# its arm64 build would remove the amd64 one), so it is unpacked into build-arm64/sysroot.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build-arm64
host_build=${HOST_BUILD:-build}   # for the amd64 sizes (built here if missing)
triplet=aarch64-linux-gnu
coinstallable=(liburing-dev libmimalloc-dev libnftables-dev libmnl-dev libgtest-dev libgmock-dev)
private=(libyaml-cpp-dev libyaml-cpp0.7)

need=()
for p in crossbuild-essential-arm64 qemu-user-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
for p in "${coinstallable[@]}"; do
    dpkg-query -W -f='${Status}' "$p:arm64" 2>/dev/null | grep -q "install ok installed" ||
        need+=("$p:arm64")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "cross-arm64: missing ${need[*]}; run as root to install them" >&2
        exit 1
    fi
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -qq
    # Refuse anything that would remove a package (an amd64 -dev the normal build needs).
    if apt-get install -s --no-install-recommends "${need[@]}" | grep -q '^Remv '; then
        echo "cross-arm64: installing ${need[*]} would remove packages:" >&2
        apt-get install -s --no-install-recommends "${need[@]}" | grep '^Remv ' >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$out/sysroot" "$out/debs"
for p in "${private[@]}"; do
    if ! ls "$out"/debs/"${p}"_*_arm64.deb >/dev/null 2>&1; then
        (cd "$out/debs" && apt-get download -qq "$p:arm64")
    fi
    dpkg -x "$out"/debs/"${p}"_*_arm64.deb "$out/sysroot"
done

cat >"$out/toolchain.cmake" <<TC
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER $triplet-gcc)
set(CMAKE_CXX_COMPILER $triplet-g++)
set(CMAKE_LIBRARY_ARCHITECTURE $triplet)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static)
set(CMAKE_PREFIX_PATH $PWD/$out/sysroot/usr)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
TC
export PKG_CONFIG_LIBDIR=/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig
cmake -S . -B "$out" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$PWD/$out/toolchain.cmake" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_WERROR=ON -DTP_BUILD_BENCH=OFF \
    -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$PWD/$out/sysroot/usr/lib/$triplet" >/dev/null
cmake --build "$out" -j "$(nproc)"

# The unit tests under qemu (ctest runs each through CMAKE_CROSSCOMPILING_EMULATOR). qemu-user
# does not emulate io_uring (io_uring_setup: ENOSYS), so the tests that need a ring skip and
# print why; the list of skips is part of the summary.
export LD_LIBRARY_PATH=$PWD/$out/sysroot/usr/lib/$triplet
set +e
(cd "$out" && ctest -L unit --output-on-failure -V) >"$out/ctest.log" 2>&1
rc=$?
set -e

if [ ! -x "$host_build/tools/tpengine/tpengine" ]; then
    cmake -S . -B "$host_build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_WERROR=ON >/dev/null
    cmake --build "$host_build" -j "$(nproc)" --target tpengine tpbench
fi
size_of() {  # size_of STRIP FILE
    "$1" -o "$out/stripped.tmp" "$2" && stat -c %s "$out/stripped.tmp" && rm -f "$out/stripped.tmp"
}
{
    echo "arm64 cross-build: $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)"
    grep -E '^[0-9]+% tests passed|tests failed' "$out/ctest.log" || true
    echo "skipped under qemu (io_uring and IP_TRANSPARENT are not emulated by qemu-user):"
    grep -E '\[  SKIPPED \] [A-Za-z.]+ \(' "$out/ctest.log" | sed -E 's/^[0-9]+: \[  SKIPPED \] /  /' | sort -u || true
    echo "failed:"
    grep -E '\[  FAILED  \] [A-Za-z.]+ \(' "$out/ctest.log" | sed -E 's/^[0-9]+: \[  FAILED  \] /  /' | sort -u || true
    echo "file: $(file -b "$out/tools/tpengine/tpengine" | cut -d, -f1-2)"
    printf 'stripped sizes (bytes):\n'
    printf '  tpengine amd64 %s arm64 %s\n' "$(size_of strip "$host_build/tools/tpengine/tpengine")" \
        "$(size_of $triplet-strip "$out/tools/tpengine/tpengine")"
    printf '  tpbench  amd64 %s arm64 %s\n' "$(size_of strip "$host_build/tools/tpbench/tpbench")" \
        "$(size_of $triplet-strip "$out/tools/tpbench/tpbench")"
} | tee "$out/summary.txt"
exit $rc
