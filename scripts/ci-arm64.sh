#!/usr/bin/env bash
# AArch64 CI: cross-compiles the native kernels (binding.gyp's sources and C++ flags, without the
# N-API bindings) with their C++ test runner, native/test/kernel_tests.cc, using Debian's
# g++-aarch64-linux-gnu, and runs it under qemu-aarch64 twice: as a CPU with FEAT_BF16 (the
# NeonBf16 family, BFDOT) and as one without (Neon). Installs the two packages when missing.
#   scripts/ci-arm64.sh           cross-compile and run under qemu
#   scripts/ci-arm64.sh --native  build and run the runner with the host's g++ (any architecture)
set -euo pipefail
cd "$(dirname "$0")/.."

native=0
[ "${1:-}" = "--native" ] && native=1

if [ "$native" = 1 ]; then
  CXX="${CXX:-g++}"
  out=build/kernel-tests-native
else
  missing=()
  command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
  command -v qemu-aarch64 >/dev/null || command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user)
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "ci-arm64: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  CXX=aarch64-linux-gnu-g++
  QEMU="$(command -v qemu-aarch64 || command -v qemu-aarch64-static)"
  out=build/kernel-tests-arm64
fi

# The addon's kernel sources and C++ flags, read from binding.gyp (one list to maintain).
mapfile -t gyp < <(node -e '
  const t = JSON.parse(require("fs").readFileSync("binding.gyp", "utf8")).targets[0];
  for (const s of t.sources) if (!/(^|\/)(addon|bind_[a-z_]+)\.cc$/.test(s)) console.log("src " + s);
  for (const f of t.cflags_cc) console.log("flag " + f);')
srcs=(native/test/kernel_tests.cc)
flags=()
for line in "${gyp[@]}"; do
  case "$line" in
    src\ *) srcs+=("${line#src }") ;;
    flag\ *) flags+=("${line#flag }") ;;
  esac
done

mkdir -p "$out"
export CXX out
objs=()
for s in "${srcs[@]}"; do objs+=("$out/$(echo "${s%.cc}" | tr / _).o"); done
start=$SECONDS
# Compile in parallel, one object per source; any failure stops the script.
printf '%s\n' "${srcs[@]}" | xargs -P "$(nproc)" -I{} sh -c \
  'o="$out/$(echo "{}" | sed "s/\.cc$//" | tr / _).o"; $CXX "$@" -c "{}" -o "$o"' _ "${flags[@]}"
if [ "$native" = 1 ]; then
  $CXX -pthread "${objs[@]}" -o "$out/kernel_tests"
else
  # Static: qemu-aarch64 then needs no AArch64 sysroot.
  $CXX -static -pthread "${objs[@]}" -o "$out/kernel_tests"
fi
echo "ci-arm64: built $out/kernel_tests in $((SECONDS - start)) s"

if [ "$native" = 1 ]; then
  "$out/kernel_tests"
else
  # -cpu max has FEAT_BF16 (BFDOT); cortex-a72 (Armv8.0) has Advanced SIMD only.
  "$QEMU" -cpu max "$out/kernel_tests" --expect-isa NeonBf16
  "$QEMU" -cpu cortex-a72 "$out/kernel_tests" --expect-isa Neon
fi
