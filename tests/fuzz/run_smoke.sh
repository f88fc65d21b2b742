#!/bin/sh
# tests/fuzz/run_smoke.sh [SECONDS] [BUILD_DIR]: runs every fuzz harness of BUILD_DIR (default
# build-fuzz, configured with -DACTLENS_FUZZ=ON, see tests/fuzz/CMakeLists.txt) for SECONDS each
# (default 30), starting from the seeds make_seeds.py writes. Fails on the first harness that finds a
# crash, a sanitizer report, a leak, an uncaught exception other than actlens::error, a timeout or
# an allocation over 2 GiB; its input is left in BUILD_DIR/fuzz/artifacts.
set -eu
seconds=${1:-30}
build=${2:-build-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
work=$build/fuzz
python3 "$here/make_seeds.py" "$work/seeds" >/dev/null
mkdir -p "$work/artifacts"
status=0
for harness in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$harness" ] || continue
    name=$(basename "$harness" | sed 's/^fuzz_//')
    corpus=$work/corpus/$name
    mkdir -p "$corpus"
    log=$work/$name.log
    # One thread: the forward passes the model harnesses run must not compete with the fuzzer.
    if OMP_NUM_THREADS=1 "$harness" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -max_len=1100000 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$name-" "$corpus" "$work/seeds/$name" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz_$name: ok, $runs runs in ${seconds}s, corpus $(ls "$corpus" | wc -l) inputs"
    else
        echo "fuzz_$name: FAILED (log: $log)"
        grep -E "ERROR|SUMMARY|terminate|what\(\)" "$log" | head -5
        status=1
    fi
done
exit $status
