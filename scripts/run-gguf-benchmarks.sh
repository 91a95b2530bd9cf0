#!/usr/bin/env bash
# The quantized-model benchmarks of docs/PERFORMANCE.md ("GGUF models and quantized weights"):
# random-weight GGUF files of the smollm-135m and llama-1b shapes at Q4_K_M and Q8_0 — batch-1
# decode against the bandwidth bound of their quantized bytes, 512-token prefill, serving next to
# the BF16 model, and the resident memory of a loaded model. JSON results go to docs/results/gguf/.
# Needs the package built (npm install); ~20 minutes on a 2-core machine; run it on an idle one.
set -euo pipefail
cd "$(dirname "$0")/.."
pw() { node bin/pagewise.js "$@"; }
out=${OUT:-docs/results/gguf}
mkdir -p "$out"
models=${MODELS_DIR:-/tmp/pagewise-bench-models}
mkdir -p "$models"
for preset in smollm-135m llama-1b; do
  [ -d "$models/$preset" ] || pw fixture --preset "$preset" --out "$models/$preset"
  for type in q4_k_m q8_0; do
    f="$models/$preset-$type.gguf"
    [ -f "$f" ] || pw fixture --preset "$preset" --format gguf --type "$type" --out "$f"
  done
done

# Batch-1 decode and 512-token prefill, the BF16 safetensors model of each shape alongside.
for type in bf16 q4_k_m q8_0; do
  if [ $type = bf16 ]; then small="$models/smollm-135m" large="$models/llama-1b"
  else small="$models/smollm-135m-$type.gguf" large="$models/llama-1b-$type.gguf"; fi
  pw bench latency --model "$small" --batch-size 1 --input-len 512 --output-len 128 --json > "$out/latency-smollm-$type.json"
  pw bench latency --model "$large" --batch-size 1 --input-len 512 --output-len 32 --iters 2 --json > "$out/latency-llama1b-$type.json"
done

# Serving (64 requests of 128 + 128 tokens) and resident memory, BF16 next to Q4_K_M.
serve_model() { # name path
  local name=$1 path=$2 port=8331
  # Resident memory on a server of its own (idle, KV pool committed; see the script).
  KV=512MiB scripts/measure-memory.sh "$path" "$out/memory-$name.json" > /dev/null
  node bin/pagewise.js serve --model "$path" --port $port --kv-cache-memory 512MiB > "$out/serve-$name.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 120); do curl -sf http://127.0.0.1:$port/health > /dev/null && break; sleep 1; done
  for c in 16 32; do
    pw bench serve --base-url http://127.0.0.1:$port --num-prompts 64 --max-concurrency "$c" --input-len 128 --output-len 128 --json > "$out/serve-$name-c$c.json"
  done
  kill $server; wait $server 2>/dev/null || true
}
serve_model smollm-135m-bf16 "$models/smollm-135m"
serve_model smollm-135m-q4_k_m "$models/smollm-135m-q4_k_m.gguf"
serve_model llama-1b-bf16 "$models/llama-1b"
serve_model llama-1b-q4_k_m "$models/llama-1b-q4_k_m.gguf"
