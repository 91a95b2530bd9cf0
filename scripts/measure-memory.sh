#!/usr/bin/env bash
# Resident memory of a loaded server (docs/PERFORMANCE.md, "GGUF models and quantized weights",
# issue #14's target: RSS <= 1.15 x the model file + the KV pool).
#
#   scripts/measure-memory.sh MODEL [OUT.json] [-- extra `pagewise serve` flags]
#
# Starts `pagewise serve --model MODEL --kv-cache-memory $KV` (KV default 512MiB), waits until the
# idle engine has committed its KV pool (RSS steady for 10 s), and records:
# - rss_bytes: the idle server (what the target is about), with /proc smaps_rollup's split into
#   anonymous memory and file-backed pages (Node's and the addon's code);
# - rss_bytes_tokenizer_worker: right after one long prompt (60,000 characters, tokenized on a
#   tokenizer worker started for it, of which the model prefills the last $PROMPT_TOKENS, default
#   4000: its steps fill the working memory sized for the largest step);
# - rss_bytes_after_worker_idle: once that worker has been idle past its timeout (30 s) and exited,
#   and the idle engine has handed back its steps' working memory.
# HEAP_PROBE=1 also prints each thread's V8 heap (scripts/heap-probe.cjs) at the idle measures.
# Prints the JSON and writes it to OUT.json when given. Measures memory, not speed: fine on a busy
# machine. Needs the package built (dist/, build/).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/measure-memory.sh MODEL [OUT.json] [-- serve flags]}
shift
out=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then out=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
kv=${KV:-512MiB}
port=${PORT:-8339}

probe_dir=$(mktemp -d)
node_options=${NODE_OPTIONS:-}
[ -n "${HEAP_PROBE:-}" ] && node_options="$node_options --require $PWD/scripts/heap-probe.cjs"
HEAP_PROBE_DIR=$probe_dir NODE_OPTIONS=$node_options \
  node bin/pagewise.js serve --model "$model" --port "$port" --kv-cache-memory "$kv" "$@" > "${TMPDIR:-/tmp}/pagewise-memory-$port.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$probe_dir"' EXIT

rss_kib() { awk '/^VmRSS/ {print $2}' /proc/$server/status; }
rollup_kib() { awk -v k="$1:" '$1 == k {print $2}' /proc/$server/smaps_rollup; }
# RSS once it has stopped moving: within 1 MiB for 10 one-second reads (at most 120 s). The KV pool
# is committed within seconds; V8 then collects the start-up garbage a few seconds later.
settled_rss_kib() {
  local prev=0 cur steady=0
  for _ in $(seq 1 120); do
    cur=$(rss_kib)
    if [ $((cur > prev ? cur - prev : prev - cur)) -lt 1024 ]; then steady=$((steady + 1)); else steady=0; fi
    [ $steady -ge 10 ] && break
    prev=$cur
    sleep 1
  done
  echo "$cur"
}

for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
  kill -0 $server 2>/dev/null || { cat "${TMPDIR:-/tmp}/pagewise-memory-$port.log" >&2; exit 1; }
  sleep 1
done
idle=$(settled_rss_kib)
anon=$(rollup_kib Anonymous)
file_backed=$(($(rollup_kib Private_Clean) + $(rollup_kib Shared_Clean)))
if [ -n "${HEAP_PROBE:-}" ]; then sleep 2; echo "V8 heaps of the idle server's threads:" >&2; cat "$probe_dir"/heap-$server-*.json >&2; fi

# One long prompt (tokenized on a worker, then cut to its last $PROMPT_TOKENS tokens for the model).
prompt=$(head -c 60000 /dev/zero | tr '\0' 'a' | sed 's/a\{10\}/once upon /g')
curl -sf "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
  -d "{\"prompt\": \"$prompt\", \"max_tokens\": 1, \"truncate_prompt_tokens\": ${PROMPT_TOKENS:-4000}}" > /dev/null
with_worker=$(rss_kib)
sleep 35
after_idle=$(settled_rss_kib)
if [ -n "${HEAP_PROBE:-}" ]; then sleep 2; echo "V8 heaps once the worker has exited:" >&2; cat "$probe_dir"/heap-$server-*.json >&2; fi

bytes=$(du -sbL "$model" | cut -f1)
kv_bytes=$(node -e 'import("./dist/cli/engine-flags.js").then((m) => console.log(m.parseByteSize(process.argv[1])))' "$kv")
json=$(node -e '
const [model, bytes, kv, idle, anon, file, worker, after] = process.argv.slice(1);
const k = (v) => Number(v) * 1024;
const r = { model, model_bytes: +bytes, kv_cache_bytes: +kv, rss_bytes: k(idle), anonymous_bytes: k(anon), file_backed_bytes: k(file),
  rss_bytes_tokenizer_worker: k(worker), rss_bytes_after_worker_idle: k(after) };
r.rss_over_kv_per_model_byte = +((r.rss_bytes - r.kv_cache_bytes) / r.model_bytes).toFixed(3);
r.target_rss_bytes = Math.floor(1.15 * r.model_bytes + r.kv_cache_bytes);
console.log(JSON.stringify(r, null, 2));
' "$model" "$bytes" "$kv_bytes" "$idle" "$anon" "$file_backed" "$with_worker" "$after_idle")
echo "$json"
[ -n "$out" ] && echo "$json" > "$out"
exit 0
