#!/bin/sh
# tests/fuzz/run_smoke.sh [SECONDS] [BUILD_DIR] [JOBS]: runs every fuzz harness of BUILD_DIR (default
# build-fuzz, configured with -DACTLENS_FUZZ=ON, see tests/fuzz/CMakeLists.txt) for SECONDS each
# (default 30), JOBS harnesses at a time (default 2, one per core: each harness is one process on one
# thread), starting from the seeds make_seeds.py writes. Fails if a harness finds a crash, a sanitizer
# report, a leak, an uncaught exception other than actlens::error, a timeout or an allocation over
# 2 GiB; its input is left in BUILD_DIR/fuzz/artifacts.
set -eu
seconds=${1:-30}
build=${2:-build-fuzz}
jobs=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
work=$build/fuzz
python3 "$here/make_seeds.py" "$work/seeds" >/dev/null
mkdir -p "$work/artifacts"
rm -f "$work"/*.verdict

# Runs one harness and writes its one-line verdict to $work/NAME.verdict ("ok ..." or "FAILED ...").
run_one() {
    harness=$1
    name=$(basename "$harness" | sed 's/^fuzz_//')
    corpus=$work/corpus/$name
    mkdir -p "$corpus"
    log=$work/$name.log
    # One thread: the forward passes the model harnesses run must not compete with the fuzzer.
    if OMP_NUM_THREADS=1 "$harness" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -max_len=131072 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$name-" "$corpus" "$work/seeds/$name" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "ok, $runs runs in ${seconds}s, corpus $(ls "$corpus" | wc -l) inputs" >"$work/$name.verdict"
    else
        { echo "FAILED (log: $log)"; grep -E "ERROR|SUMMARY|terminate|what\(\)" "$log" | head -5; } \
            >"$work/$name.verdict"
    fi
}

running=0
for harness in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$harness" ] || continue
    run_one "$harness" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
done
wait

status=0
for harness in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$harness" ] || continue
    name=$(basename "$harness" | sed 's/^fuzz_//')
    verdict=$(cat "$work/$name.verdict" 2>/dev/null || echo "FAILED (no verdict: the harness did not run)")
    echo "fuzz_$name: $verdict"
    case $verdict in ok*) ;; *) status=1 ;; esac
done
exit $status
