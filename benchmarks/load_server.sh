#!/usr/bin/env bash
# Load test of the example server (examples/server, README "Serving"): starts it on 127.0.0.1 at a
# free port with a GPT-2-small-shaped random model, runs benchmarks/load_client.py for 1, 4, 8 and 16
# concurrent clients (half the requests steered, half sampled with a seed), checks that every
# response equals the same request run alone, and prints tokens/s, the speedup over one client and
# the p50/p99 latency. Exits 1 if a response differed or failed. Loopback only; every client count
# is bounded by PER_CLIENT requests per client and DEADLINE seconds.
#
#   benchmarks/load_server.sh [path/to/actlens_server]
#
# Builds nothing: the binary defaults to build/examples/actlens_server. Environment knobs: CLIENTS
# ("1,4,8,16"), PER_CLIENT (3), MAX_TOKENS (32), DEADLINE (120), MAX_BATCH (16), MODEL_ARGS
# ("--random gpt2-small"), PYTHON (python3), OMP_WAIT_POLICY (passive: the server's idle OpenMP
# threads sleep instead of spinning, which is much faster when other processes load the machine,
# as benchmarks/run_forward_vs_torch.sh found; set it to active for an idle machine).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
server="${1:-$here/../build/examples/actlens_server}"
[[ -x "$server" ]] || { echo "load_server.sh: no server at $server (build the actlens_server target)" >&2; exit 2; }

log="$(mktemp)"
OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" "$server" --host 127.0.0.1 --port 0 --max-batch "${MAX_BATCH:-16}" ${MODEL_ARGS:---random gpt2-small} >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

port=""
for _ in $(seq 1 600); do # the random model takes a few seconds to make
    port="$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$log")"
    [[ -n "$port" ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "load_server.sh: the server exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$port" ]] || { echo "load_server.sh: the server did not start within 60 s" >&2; exit 1; }

"${PYTHON:-python3}" "$here/load_client.py" --port "$port" --clients "${CLIENTS:-1,4,8,16}" \
    --per-client "${PER_CLIENT:-3}" --max-tokens "${MAX_TOKENS:-32}" --deadline "${DEADLINE:-120}"
