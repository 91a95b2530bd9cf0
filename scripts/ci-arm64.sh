#!/usr/bin/env bash
# AArch64 CI: cross-compiles the whole native addon (binding.gyp's sources, defines and C++ flags)
# with Debian's g++-aarch64-linux-gnu, links it as build/kernel-tests-arm64/pagewise.node (no Node
# for arm64 is needed to prove it builds), and runs the kernels' C++ test runner,
# native/test/kernel_tests.cc, under qemu-aarch64 twice: as a CPU with FEAT_BF16 and FEAT_DotProd
# (the NeonBf16 family: BFDOT, SDOT) and as an Armv8.0 CPU without them (Neon). Installs the two
# packages when missing.
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

# binding.gyp is the one list of sources, defines and flags: "kernel" sources (no N-API), the
# "binding" ones (addon.cc, bind_*.cc), and the C++ flags and defines.
kernels=(native/test/kernel_tests.cc)
bindings=()
flags=(-fPIC)
while read -r kind value; do
  case "$kind" in
    kernel) kernels+=("$value") ;;
    binding) bindings+=("$value") ;;
    flag) flags+=("$value") ;;
  esac
done < <(node -e '
  const t = JSON.parse(require("fs").readFileSync("binding.gyp", "utf8")).targets[0];
  for (const s of t.sources) console.log((/(^|\/)(addon|bind_[a-z_]+)\.cc$/.test(s) ? "binding " : "kernel ") + s);
  for (const f of t.cflags_cc) console.log("flag " + f);')

mkdir -p "$out"
obj() { echo "$out/$(echo "${1%.cc}" | tr / _).o"; }
export CXX out
compile() {  # sources on stdin, in parallel; any failure stops the script
  xargs -P "$(getconf _NPROCESSORS_ONLN)" -I{} sh -c \
    'o="$out/$(echo "{}" | sed "s/\.cc$//" | tr / _).o"; $CXX "$@" -c "{}" -o "$o"' _ "$@"
}
start=$SECONDS
kobjs=()
for s in "${kernels[@]}"; do kobjs+=("$(obj "$s")"); done
if [ "$native" = 1 ]; then
  printf '%s\n' "${kernels[@]}" | compile "${flags[@]}"
  $CXX -pthread "${kobjs[@]}" -o "$out/kernel_tests"
else
  # The N-API bindings need only headers: Node's (node_api.h) and node-addon-api's.
  nodedir="${npm_config_nodedir:-/usr}"
  napi="$(node -p "require('node-addon-api').include" | tr -d '"')"
  defines=()
  while read -r d; do defines+=("-D$d"); done < <(node -e '
    for (const d of JSON.parse(require("fs").readFileSync("binding.gyp", "utf8")).targets[0].defines) console.log(d);')
  printf '%s\n' "${kernels[@]}" "${bindings[@]}" | compile "${flags[@]}" "${defines[@]}" -I"$nodedir/include/node" -I"$napi"
  bobjs=()
  for s in "${bindings[@]}"; do bobjs+=("$(obj "$s")"); done
  # The addon as node-gyp links it (Node's symbols resolve at load time), less the test runner.
  $CXX -shared -pthread "${bobjs[@]}" "${kobjs[@]:1}" -o "$out/pagewise.node"
  # Static: qemu-aarch64 then needs no AArch64 sysroot.
  $CXX -static -pthread "${kobjs[@]}" -o "$out/kernel_tests"
fi
echo "ci-arm64: built $out in $((SECONDS - start)) s"

if [ "$native" = 1 ]; then
  "$out/kernel_tests"
else
  # -cpu max has FEAT_BF16 and FEAT_DotProd; cortex-a72 (Armv8.0) has Advanced SIMD only.
  "$QEMU" -cpu max "$out/kernel_tests" --expect-isa NeonBf16
  "$QEMU" -cpu cortex-a72 "$out/kernel_tests" --expect-isa Neon
fi
