#!/usr/bin/env bash
# Make SwiftShader (Google's CPU implementation of Vulkan, which Dawn accepts) available for the
# WebGPU backend's tests, and print the ICD file to point VK_ICD_FILENAMES at. Debian's
# chromium-common package is only the carrier: its two SwiftShader files are extracted into a cache
# outside the repository; nothing else of the package is installed or run.
# usage: scripts/fetch-swiftshader.sh [CACHE_DIR]   (default ~/.cache/pagewise/swiftshader)
set -euo pipefail
dir="${1:-${HOME}/.cache/pagewise/swiftshader}"
icd="$dir/vk_swiftshader_icd.json"
mkdir -p "$dir"
if [ ! -s "$icd" ] || [ ! -s "$dir/libvk_swiftshader.so" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download chromium-common >&2)
  dpkg-deb --fsys-tarfile "$tmp"/chromium-common_*.deb |
    tar -x -C "$tmp" ./usr/lib/chromium/libvk_swiftshader.so ./usr/lib/chromium/vk_swiftshader_icd.json
  mv "$tmp/usr/lib/chromium/libvk_swiftshader.so" "$dir/libvk_swiftshader.so"
  # The ICD names its library relative to itself ("./libvk_swiftshader.so"), so the pair stays usable here.
  mv "$tmp/usr/lib/chromium/vk_swiftshader_icd.json" "$icd"
fi
echo "$icd"
