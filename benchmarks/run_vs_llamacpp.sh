#!/usr/bin/env bash
# actlens side by side with llama.cpp on the same GGUF files (issue 11's benchmark):
#
#   benchmarks/run_vs_llamacpp.sh [BENCH] [--quick]
#
# BENCH is build/benchmarks/bench_vs_llamacpp (default). The script
#   1. writes a random 1B-shaped Llama (d 2048, 16 layers, 32 heads over 8 KV heads, d_mlp 8192, tied
#      embeddings over the bundled 512-token vocabulary) as F16, Q8_0, Q4_0, Q4_K and Q6_K GGUFs with actlens's
#      save_gguf, into $ACTLENS_BENCH_DIR (default ~/.cache/actlens-bench/llama1b), once;
#   2. installs node-llama-cpp@3.21.1 (llama.cpp's prebuilt CPU binaries) into ~/.cache/actlens-llamacpp
#      when it is missing;
#   3. for each file, thread count (1, 2) and prompt length (64, 256): loads the file, evaluates the
#      prompt and decodes 32 tokens greedily: actlens with its weights multiplied in place in the
#      mapped file (io::gguf_weights::mapped), actlens with them packed at load (packed), then
#      llama.cpp (interleaved, so that the load of a shared machine hits all three), each in a fresh
#      process;
#   4. prints a table per actlens mode with both sides and the ratios the issue sets goals for:
#      resident memory over the file size (goal <= 1.15), load time over llama.cpp's (<= 2), prompt
#      tokens/s over llama.cpp's (>= 2) and decode tokens/s over llama.cpp's (>= 1.2);
#   5. and a table of the machine's limits (bench_vs_llamacpp limits, measured after each file's
#      pages settle): the decode tokens/s that reading the weights once a token allows, and the
#      prompt tokens/s that the f32 multiply-add peak allows, with each side's share of them and
#      the share the goals would take.
#   Before the runs, each file's cached pages are dropped and read back (bench_vs_llamacpp pages
#   --settle), so that both runtimes map the same pages, in 2 MiB folios (a file written moments ago
#   can be 35-67% in 2 MiB pages, and decode from 4 KiB pages is 1.2-1.4x slower on both sides);
#   each file's share of 2 MiB pages is printed.
# --quick: a 4-layer, d 512 model and only 1 thread, for a check of the script itself.
# --keep-pages: run on the page cache as it is (no settling).
# --modes "mapped packed": the actlens modes to run (default both; mapped-fast: mapped in fast precision).
# --files "model-f16.gguf ...": the files to run (default all five).
# --threads "1 2": the thread counts to run (default 1 and 2; --quick: 1).
# --prompts "64 256": the prompt lengths to run (default both).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
bench="$root/build/benchmarks/bench_vs_llamacpp"
quick=0
keep_pages=0
modes="mapped packed"
files="model-f16.gguf model-q8_0.gguf model-q4_0.gguf model-q4_k.gguf model-q6_k.gguf"
threads_option=""
prompts="64 256"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --keep-pages) keep_pages=1 ;;
    --modes) modes="$2"; shift ;;
    --files) files="$2"; shift ;;
    --threads) threads_option="$2"; shift ;;
    --prompts) prompts="$2"; shift ;;
    -h | --help) sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) bench="$1" ;;
    esac
    shift
done
if [ ! -x "$bench" ]; then
    echo "error: $bench is not built (cmake --build build --target bench_vs_llamacpp)" >&2
    exit 2
fi
command -v node >/dev/null || { echo "error: node is not installed (Debian: nodejs npm)" >&2; exit 2; }

modules="$HOME/.cache/actlens-llamacpp/node_modules"
if [ ! -d "$modules/node-llama-cpp" ]; then
    echo "installing node-llama-cpp@3.21.1 into ~/.cache/actlens-llamacpp"
    mkdir -p "$HOME/.cache/actlens-llamacpp"
    (cd "$HOME/.cache/actlens-llamacpp" && npm init -y >/dev/null && npm install --no-audit --no-fund node-llama-cpp@3.21.1)
fi

if ((quick)); then
    dir="${ACTLENS_BENCH_DIR:-$HOME/.cache/actlens-bench/llama-quick}"
    shape=(--layers 4 --d 512 --heads 8 --kv-heads 2 --d-mlp 2048)
    thread_counts=(1)
else
    dir="${ACTLENS_BENCH_DIR:-$HOME/.cache/actlens-bench/llama1b}"
    shape=()
    thread_counts=(1 2)
fi
if [ -n "$threads_option" ]; then read -r -a thread_counts <<<"$threads_option"; fi
mkdir -p "$dir"
if [ ! -f "$dir/model-q8_0.gguf" ] || [ ! -f "$dir/model-q4_0.gguf" ] || [ ! -f "$dir/model-q4_k.gguf" ] ||
    [ ! -f "$dir/model-q6_k.gguf" ]; then
    echo "writing the models into $dir"
    "$bench" write "$dir" "${shape[@]}"
fi

results="$(mktemp)"
limits="$(mktemp)"
trap 'rm -f "$results" "$limits"' EXIT
echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(nproc) CPUs | $(uptime | sed 's/.*load average/load average/')"
for file in $files; do
    if ((keep_pages)); then "$bench" pages "$dir/$file"; else "$bench" pages "$dir/$file" --settle; fi
done
for file in $files; do
    for threads in "${thread_counts[@]}"; do
        "$bench" limits "$dir/$file" --threads "$threads" --prompts "${prompts// /,}" | grep '^LIMITS' |
            sed "s|^|$file |" | tee -a "$limits"
    done
done
for file in $files; do
    for threads in "${thread_counts[@]}"; do
        for prompt in $prompts; do
            for side in $modes llama.cpp; do
                if [ "$side" != llama.cpp ]; then
                    line="$("$bench" run "$dir/$file" --prompt "$prompt" --decode 32 --threads "$threads" --weights "$side" |
                        grep '^RESULT')"
                else
                    line="$(node "$here/llamacpp_bench.mjs" "$modules" "$dir/$file" "$prompt" 32 "$threads" 512 | grep '^RESULT')"
                fi
                echo "$file threads=$threads T=$prompt $line" | tee -a "$results"
            done
        done
    done
done

# The value of key=value field `key` in a line, for the tables' awk programs.
awk_field='
function field(line, key,   i, n, parts, kv) {
    n = split(line, parts, " ")
    for (i = 1; i <= n; ++i) { split(parts[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}'
for mode in $modes; do
    echo
    echo "actlens weights=$mode against llama.cpp:"
    printf '%-16s %3s %4s | %8s %8s %5s | %9s %9s %5s | %8s %8s %5s | %8s %8s %6s\n' file thr T \
        "load s" "lcpp s" ratio "prompt/s" "lcpp" ratio "decode/s" "lcpp" ratio "rss MB" "lcpp MB" "/file"
    # Each llama.cpp line against the line of this mode with the same file, threads and T before it.
    awk -v dir="$dir" -v mode="$mode" "$awk_field"'
    {
        if (field($0, "runtime") == "actlens") { if (field($0, "weights") == mode) a = $0; next }
        file = $1; thr = field(a, "threads"); t = field(a, "T")
        cmd = "stat -c %s " dir "/" file; cmd | getline bytes; close(cmd)
        printf "%-16s %3s %4s | %8.2f %8.2f %5.2f | %9.1f %9.1f %5.2f | %8.2f %8.2f %5.2f | %8.0f %8.0f %6.2f\n",
            file, thr, t,
            field(a, "load_s"), field($0, "load_s"), field(a, "load_s") / field($0, "load_s"),
            field(a, "prompt_tok_s"), field($0, "prompt_tok_s"), field(a, "prompt_tok_s") / field($0, "prompt_tok_s"),
            field(a, "decode_tok_s"), field($0, "decode_tok_s"), field(a, "decode_tok_s") / field($0, "decode_tok_s"),
            field(a, "peak_rss_mb"), field($0, "peak_rss_mb"), field(a, "peak_rss_mb") * 1048576 / bytes
    }' "$results"
done
echo
echo "goals (issue 11): actlens peak rss / file <= 1.15; load ratio <= 2; prompt ratio >= 2; decode ratio >= 1.2"

echo
echo "against this machine's limits (bench_vs_llamacpp limits): decode bound = weights read once a token at the"
echo "measured read rate; prompt bound = f32 multiply-adds at the measured peak (fast precision's dot products"
echo "are not bound by it); each side's tokens/s as a share of the bound, and the goal's (1.2x, 2x llama.cpp's):"
printf '%-16s %3s %4s %-12s | %7s %7s | %7s %6s %6s %6s | %7s %6s %6s %6s\n' file thr T actlens \
    "GB/s" GFLOP/s "decode" actlens lcpp goal "prompt" actlens lcpp goal
awk -v modes="$modes" "$awk_field"'
BEGIN { n_modes = split(modes, mode_list, " ") }
FNR == NR { limit[$1 " " field($0, "threads")] = $0; next }
{
    if (field($0, "runtime") == "actlens") { side[field($0, "weights")] = $0; next }
    l = limit[$1 " " field($0, "threads")]
    if (l == "") next
    t = substr($3, 3); dec = field(l, "decode_tok_s"); pro = field(l, "f32_prompt_T" t "_tok_s")
    for (i = 1; i <= n_modes; ++i) {
        m = mode_list[i]
        if (!(m in side)) continue
        printf "%-16s %3s %4s %-12s | %7.1f %7.0f | %7.1f %5.0f%% %5.0f%% %5.0f%% | %7.1f %5.0f%% %5.0f%% %5.0f%%\n",
            $1, field($0, "threads"), t, m, field(l, "read_gb_s"), field(l, "fma_gflop_s"),
            dec, 100 * field(side[m], "decode_tok_s") / dec, 100 * field($0, "decode_tok_s") / dec,
            120 * field($0, "decode_tok_s") / dec,
            pro, 100 * field(side[m], "prompt_tok_s") / pro, 100 * field($0, "prompt_tok_s") / pro,
            200 * field($0, "prompt_tok_s") / pro
    }
    delete side
}' "$limits" "$results"
