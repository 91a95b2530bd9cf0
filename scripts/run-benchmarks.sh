#!/usr/bin/env bash
# Runs every benchmark behind docs/PERFORMANCE.md on this machine and writes the JSON results to
# docs/results/ (then: node --import tsx scripts/benchmark-report.ts docs/results/*.json --out ... --svg ...).
# Needs the package built (npm install). Takes ~15 minutes on a 2-core machine; run it on an idle one.
set -euo pipefail
cd "$(dirname "$0")/.."
pw() { node bin/pagewise.js "$@"; }
out=${OUT:-docs/results}
mkdir -p "$out"
models=${MODELS_DIR:-/tmp/pagewise-bench-models}
[ -d "$models/smollm-135m" ] || pw fixture --preset smollm-135m --out "$models/smollm-135m"
[ -d "$models/llama-1b" ] || pw fixture --preset llama-1b --out "$models/llama-1b"
S="$models/smollm-135m"

pw bench kernels --json > "$out/kernels.json"
pw bench sampler --json > "$out/sampler.json"
pw bench latency --model "$S" --batch-size 1 --input-len 512 --output-len 128 --json > "$out/latency-smollm.json"
pw bench latency --model "$models/llama-1b" --batch-size 1 --input-len 512 --output-len 32 --iters 2 --json > "$out/latency-llama1b.json"
pw bench throughput --model "$S" --num-prompts 64 --input-len 128 --output-len 128 --compare-static --json > "$out/throughput-64x128.json"
pw bench throughput --model "$S" --num-prompts 200 --dataset random --seed 0 --compare-static --json > "$out/throughput-random-200.json"
pw bench throughput --model "$S" --num-prompts 64 --dataset shared-prefix --input-len 512 --output-len 64 --compare-prefix-caching --json > "$out/throughput-shared-prefix.json"
pw bench sharing --model "$S" --json > "$out/sharing.json"

# Serving: one server, the load generator at several concurrencies (64 requests of 128 + 128 tokens).
pw serve --model "$S" --port 8321 > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf http://127.0.0.1:8321/health > /dev/null && break; sleep 1; done
for c in 1 8 16 32 64; do
  pw bench serve --base-url http://127.0.0.1:8321 --num-prompts 64 --max-concurrency "$c" --input-len 128 --output-len 128 --json > "$out/serve-c$c.json"
done
