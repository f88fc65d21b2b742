#!/bin/bash
# tests/fuzz/run_long.sh BUILD_DIR WORK_DIR [SECONDS_PER_RUN] [LANES]: the long fuzzing campaign.
# LANES processes (default 2, one per core) take the harnesses of BUILD_DIR/tests/fuzz in turn, each
# for SECONDS_PER_RUN (default 600), round after round until stopped (kill the process group). The
# corpora grow in WORK_DIR/corpus and carry over between runs and campaigns; every run appends one
# line to WORK_DIR/ledger.txt (harness, exit code, executions, coverage, corpus size), and a run
# that finds something leaves its input in WORK_DIR/artifacts and its log in WORK_DIR/logs. The
# harnesses run at idle priority (SCHED_IDLE), so the campaign can share a machine with builds and
# takes only the CPU they leave.
# With UNTIL=N in the environment, a harness whose executions in the ledger reach N is skipped, so
# that the campaign's time goes to the harnesses still short of that total (e.g. UNTIL=10000000).
# Inputs are at most MAX_LEN bytes (default 131072, as in run_smoke.sh: every seed fits; larger
# inputs mostly add bytes of weights to hash and copy, and slowed the harnesses three- to fourfold).
# A timeout is replayed at normal priority before it counts: at idle priority a busy machine can
# starve a run past the limit, so one that then finishes in time is logged as "timeout-not-reproduced"
# and its input moved to WORK_DIR/artifacts/not-reproduced.
#   tests/fuzz/run_long.sh --totals WORK_DIR     executions, hours (wall, at idle priority) and findings
#                                                per harness, from the ledger
set -euo pipefail

if [[ "${1:-}" == "--totals" ]]; then
    printf "%-20s %14s %8s %10s %9s\n" harness executions hours "per second" findings
    awk '{ split($4, r, "="); split($5, s, "="); runs[$2] += r[2]; secs[$2] += s[2]; if ($3 != "rc=0") bad[$2]++ }
         END { for (h in runs) printf "%-20s %14d %8.2f %10.0f %9d\n", h, runs[h], secs[h] / 3600,
                                      runs[h] / secs[h], bad[h] }' "$2/ledger.txt" | sort
    exit 0
fi
build=$(cd "$1" && pwd)
mkdir -p "$2"
work=$(cd "$2" && pwd)
per=${3:-600}
lanes=${4:-2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python3 "$here/make_seeds.py" "$work/seeds" >/dev/null
mkdir -p "$work/corpus" "$work/artifacts" "$work/logs"
harnesses=("$build"/tests/fuzz/fuzz_*)

lane() {
    local lane=$1 i harness name log rc runs cov note artifact ran=1
    while ((ran)); do # until every harness of the lane has reached UNTIL
        ran=0
        for i in "${!harnesses[@]}"; do
            ((i % lanes == lane)) || continue
            harness=${harnesses[$i]}
            name=$(basename "$harness" | sed 's/^fuzz_//')
            if [[ -n "${UNTIL:-}" ]] && awk -v h="$name" -v until="$UNTIL" '$2 == h { split($4, r, "="); n += r[2] }
                    END { exit !(n >= until) }' "$work/ledger.txt" 2>/dev/null; then
                continue
            fi
            ran=1
            mkdir -p "$work/corpus/$name"
            log="$work/logs/$name.$(date +%s).log"
            rc=0
            # One thread: the forward passes the model harnesses run must not compete with the fuzzer.
            OMP_NUM_THREADS=1 chrt -i 0 "$harness" -max_total_time="$per" -timeout=25 -rss_limit_mb=2048 \
                -malloc_limit_mb=2048 -max_len="${MAX_LEN:-131072}" -print_final_stats=1 \
                -artifact_prefix="$work/artifacts/$name-" "$work/corpus/$name" "$work/seeds/$name" >"$log" 2>&1 || rc=$?
            runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
            cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
            note=""
            artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
            if ((rc != 0)) && grep -q 'libFuzzer: timeout' "$log" && [[ -f "$artifact" ]] &&
                OMP_NUM_THREADS=1 "$harness" -timeout=25 -rss_limit_mb=2048 "$artifact" >>"$log" 2>&1; then
                mkdir -p "$work/artifacts/not-reproduced"
                mv "$artifact" "$work/artifacts/not-reproduced/"
                rc=0 note=" timeout-not-reproduced"
            fi
            echo "$(date -u +%FT%TZ) $name rc=$rc runs=${runs:-0} seconds=$per cov=${cov:-?}" \
                "corpus=$(ls "$work/corpus/$name" | wc -l)$note" >>"$work/ledger.txt"
            if ((rc == 0)); then rm -f "$log"; fi
        done
    done
}
for ((l = 0; l < lanes; ++l)); do lane "$l" & done
wait
