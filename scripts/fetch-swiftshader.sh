#!/usr/bin/env bash
# Make SwiftShader (Google's CPU implementation of Vulkan, which Dawn accepts) available for the
# WebGPU backend's tests, and print its folder. Debian's chromium-common package is only the
# carrier: three files are extracted into a cache outside the repository (SwiftShader, its ICD
# file, and Chromium's copy of the Vulkan loader for machines without libvulkan1); nothing else of
# the package is installed or run. Use it as:
#   dir="$(scripts/fetch-swiftshader.sh)"
#   export VK_ICD_FILENAMES="$dir/vk_swiftshader_icd.json" LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# usage: scripts/fetch-swiftshader.sh [CACHE_DIR]   (default ~/.cache/pagewise/swiftshader)
set -euo pipefail
dir="${1:-${HOME}/.cache/pagewise/swiftshader}"
files=(libvk_swiftshader.so vk_swiftshader_icd.json libvulkan.so.1)
mkdir -p "$dir"
missing=0
for f in "${files[@]}"; do [ -s "$dir/$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download chromium-common >&2)
  dpkg-deb --fsys-tarfile "$tmp"/chromium-common_*.deb | tar -x -C "$tmp" "${files[@]/#/./usr/lib/chromium/}"
  # The ICD names its library relative to itself ("./libvk_swiftshader.so"), so the set stays usable here.
  for f in "${files[@]}"; do mv "$tmp/usr/lib/chromium/$f" "$dir/$f"; done
fi
echo "$dir"
