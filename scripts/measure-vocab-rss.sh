#!/usr/bin/env bash
# Resident memory of a busy server whose prompts have covered the whole vocabulary: what the token
# embedding's lookups keep resident (docs/PERFORMANCE.md, ninth round-two session).
#
#   scripts/measure-vocab-rss.sh MODEL VOCAB_SIZE
#
# Starts `pagewise serve --model MODEL` (KV 256MiB, port $PORT or 8341), and prints the model file
# mapping's resident bytes (/proc/PID/smaps) and the server's RSS three times: idle, right after
# prompts of 1024 token ids covering ids 0 .. VOCAB_SIZE - 1 (one token generated each), and idle
# again 12 s later. Measures memory, not speed: fine on a busy machine. Needs the package built.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/measure-vocab-rss.sh MODEL VOCAB_SIZE}
vocab=${2:?usage: scripts/measure-vocab-rss.sh MODEL VOCAB_SIZE}
port=${PORT:-8341}
node bin/pagewise.js serve --model "$model" --port "$port" --kv-cache-memory 256MiB --max-model-len 2048 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf "localhost:$port/health" >/dev/null && break; sleep 1; done
measure() {
  local file rss
  file=$(grep -A6 "$(basename "$model")" "/proc/$pid/smaps" | awk '/^Rss/ { t += $2 } END { print t + 0 }')
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
  echo "file mapping ${file} kB, RSS ${rss} kB"
}
sleep 12
idle=$(measure)
node -e '
  const [port, vocab] = process.argv.slice(1).map(Number);
  (async () => {
    for (let start = 0; start < vocab; start += 1024) {
      const prompt = Array.from({ length: Math.min(1024, vocab - start) }, (_, i) => start + i);
      const r = await fetch(`http://localhost:${port}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt, max_tokens: 1 }) });
      if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
    }
  })();
' "$port" "$vocab"
busy=$(measure)
sleep 12
echo "idle: $idle; right after the vocabulary: $busy; idle again: $(measure)"
