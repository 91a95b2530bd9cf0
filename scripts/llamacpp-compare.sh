#!/usr/bin/env bash
# Pagewise and llama.cpp on the same GGUF files, same host, same threads, runs alternating:
#
#   LLAMA_BENCH=/path/to/llama-bench OUT=DIR scripts/llamacpp-compare.sh MODEL.gguf [MODEL.gguf ...]
#
# For each model and round (ROUNDS, default 2): `llama-bench -p 512 -n 128` (its defaults: f16 KV,
# batch 2048 / ubatch 512), then `pagewise bench latency --input-len 512 --output-len 128` (bfloat16
# KV, its default for quantized models on the CPU). Writes OUT/llamacpp-NAME-ROUND.json and
# OUT/pagewise-NAME-ROUND.json and prints a line per run: prefill and decode tok/s, and the
# decode's share of the bandwidth bound from the Pagewise run's own memory probe in that round.
# llama.cpp is only a yardstick here: build it from its sources (e.g. the llama.cpp tree vendored
# in PyPI's llama-cpp-python sdist, `cmake -DGGML_NATIVE=ON`); nothing in Pagewise uses it.
set -euo pipefail
: "${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}"
: "${OUT:?set OUT to a directory for the JSON}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-2}"
here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$OUT"
for model in "$@"; do
  name="$(basename "$model" .gguf)"
  for round in $(seq 1 "$ROUNDS"); do
    ll="$OUT/llamacpp-$name-$round.json"
    pw="$OUT/pagewise-$name-$round.json"
    "$LLAMA_BENCH" -m "$model" -t "$THREADS" -p 512 -n 128 -r 2 -o json > "$ll" 2>/dev/null
    node "$here/bin/pagewise.js" bench latency --model "$model" --threads "$THREADS" --input-len 512 --output-len 128 --iters 2 --json > "$pw" 2>/dev/null
    node -e '
      const [ll, pw] = [1, 2].map((i) => JSON.parse(require("node:fs").readFileSync(process.argv[i], "utf8")));
      const pp = ll.find((r) => r.n_prompt > 0).avg_ts, tg = ll.find((r) => r.n_gen > 0).avg_ts;
      const gbs = pw.machine_peaks.memory_bandwidth_gbs, bytes = pw.weight_bytes_per_step;
      const share = (tps) => ((tps * bytes) / (gbs * 1e9) * 100).toFixed(0) + "%";
      console.log(JSON.stringify({ model: process.argv[3], round: Number(process.argv[4]), probe_gbs: +gbs.toFixed(1),
        llamacpp: { prefill: +pp.toFixed(1), decode: +tg.toFixed(2), decode_share: share(tg) },
        pagewise: { prefill: +pw.prefill_tokens_per_s.toFixed(1), decode: +pw.decode_tokens_per_s.toFixed(2), decode_share: share(pw.decode_tokens_per_s) } }));
    ' "$ll" "$pw" "$name" "$round"
  done
done
