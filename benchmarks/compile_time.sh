#!/usr/bin/env bash
# Compile time and peak compiler memory of three translation units that stand for what a user pays
# (README "Compile time"):
#   umbrella      a file holding only `#include <actlens/actlens.hpp>` and an empty main
#   quickstart    examples/quickstart.cpp
#   snmf_features examples/snmf_features.cpp (capture, SNMF fit, feature read-out: a method-heavy user)
# each compiled to an object file with the flags of the project's build (-O2 -std=c++17
# -march=native -fopenmp and the dependencies' include folders), RUNS times, in both modes:
#   header-only   as is: the file compiles every template it uses
#   compiled      with -DACTLENS_COMPILED, as a program linked with actlens::compiled: the forward,
#                 loaders, generation and methods the library holds are only declared
# and, in the compiled mode, the library's own source (cmake/actlens_compiled.cpp, row "library"): the
# one-off cost of building actlens::compiled. The table shows the minimum over the runs of the wall
# time, the user CPU time and the peak resident memory.
#
#   benchmarks/compile_time.sh [--runs N] [--against COMMIT]
#
# --against COMMIT also compiles the same files of COMMIT (checked out for the run with
# `git worktree add` in a temporary folder, removed on exit), interleaved with this checkout's runs
# so that the load of a shared machine hits both, and adds the ratio now / COMMIT. On a loaded
# machine wall time grows with the load; user time much less, which is why it is shown as well.
# Environment: CXX (g++), EXTRA_FLAGS (appended to the flags, e.g. -O0 or -fsyntax-only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$here/bench_env.sh"

runs=3
against=""
while (($#)); do
    case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --against) against="$2"; shift 2 ;;
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: --runs must be a positive integer, got '$runs'" >&2
    exit 2
fi
cxx="${CXX:-g++}"
time_cmd=/usr/bin/time # GNU time: %M (peak resident memory) is what the shell keyword lacks
if [[ ! -x "$time_cmd" ]]; then
    echo "error: $time_cmd (GNU time, Debian package 'time') is needed for the peak memory" >&2
    exit 2
fi
eigen_flags="$(pkg-config --cflags-only-I eigen3 2>/dev/null || echo -I/usr/include/eigen3)"

work="$(mktemp -d)"
base=""
cleanup() {
    if [[ -n "$base" ]]; then git -C "$root" worktree remove --force "$base" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
if [[ -n "$against" ]]; then
    base="$work/base"
    git -C "$root" worktree add --detach "$base" "$against" >/dev/null 2>&1 ||
        { echo "error: cannot check out '$against' (git worktree add)" >&2; exit 2; }
fi
printf '#include <actlens/actlens.hpp>\n\nint main() { return 0; }\n' >"$work/umbrella.cpp"

# UNIT/MODE pairs; "library" is the source of actlens::compiled (absent from a COMMIT before it).
units=(umbrella/header-only quickstart/header-only snmf_features/header-only
       umbrella/compiled quickstart/compiled snmf_features/compiled library/compiled)
source_of() { # source_of CHECKOUT UNIT
    case "$2" in
    umbrella) echo "$work/umbrella.cpp" ;;
    library) echo "$1/cmake/actlens_compiled.cpp" ;;
    *) echo "$1/examples/$2.cpp" ;;
    esac
}

# compile CHECKOUT UNIT/MODE LABEL: appends "UNIT/MODE wall user peak_kb" to $work/<label>.txt.
compile() {
    local checkout="$1" unit="${2%/*}" mode="${2#*/}" label="$3" source
    source="$(source_of "$checkout" "$unit")"
    [[ -f "$source" ]] || return 0
    local mode_flags=()
    if [[ "$mode" == compiled && "$unit" != library ]]; then mode_flags=(-DACTLENS_COMPILED); fi
    # shellcheck disable=SC2086  # eigen_flags and EXTRA_FLAGS are lists of flags
    if ! "$time_cmd" -f "%e %U %M" -o "$work/time.txt" "$cxx" -O2 -std=c++17 -march=native -fopenmp \
        -I"$checkout/include" $eigen_flags -DACTLENS_MODEL_DIR="\"$checkout/examples/models/stories260K\"" \
        "${mode_flags[@]}" ${EXTRA_FLAGS:-} -c "$source" -o "$work/out.o" 2>"$work/errors.txt"; then
        echo "error: $unit ($mode, $label) does not compile:" >&2
        head -20 "$work/errors.txt" >&2
        exit 1
    fi
    echo "$2 $(tail -1 "$work/time.txt")" >>"$work/$label.txt"
}

echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(nproc) CPUs | load average: $(bench_loadavg)"
echo "# $("$cxx" --version | head -1) | -O2 -std=c++17 -march=native -fopenmp ${EXTRA_FLAGS:-} | min of $runs runs"
echo "# now: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- include examples || echo ' + uncommitted changes')${against:+ | against: $against}"
for ((run = 1; run <= runs; ++run)); do
    for unit in "${units[@]}"; do
        # the library is compiled once: it is a one-off cost, and the longest of the units
        if [[ "$unit" == library/* && "$run" -gt 1 ]]; then continue; fi
        compile "$root" "$unit" now
        if [[ -n "$base" ]]; then compile "$base" "$unit" base; fi
    done
done
echo "# finished, load average: $(bench_loadavg)"

python3 - "$work" "${against}" "${units[@]}" <<'PY'
import sys

work, against, units = sys.argv[1], sys.argv[2], sys.argv[3:]

def best(label):
    """unit -> (wall s, user s, peak MB), each the minimum over the runs"""
    rows = {}
    for line in open(f"{work}/{label}.txt"):
        unit, wall, user, kb = line.split()
        rows.setdefault(unit, []).append((float(wall), float(user), int(kb) / 1024))
    return {u: tuple(min(column) for column in zip(*r)) for u, r in rows.items()}

def row(u):
    unit, mode = u.split("/")
    return f"{unit:<16}{mode:<13}"

now = best("now")
if not against:
    print(f"{'TU':<16}{'mode':<13}{'wall s':>9}{'user s':>9}{'peak MB':>9}")
    for u in units:
        print(f"{row(u)}{now[u][0]:>9.2f}{now[u][1]:>9.2f}{now[u][2]:>9.0f}")
    sys.exit(0)
base = best("base")
name = against[:12]
print(f"{'TU':<16}{'mode':<13}{'wall s':>9}{'user s':>9}{'peak MB':>9} | {name + ' wall':>16}{'user':>8}{'MB':>7}"
      f" | {'wall ratio':>10}{'user ratio':>11}{'MB ratio':>9}")
for u in units:
    a = now[u]
    if u not in base: # the library, absent before the compiled mode
        print(f"{row(u)}{a[0]:>9.2f}{a[1]:>9.2f}{a[2]:>9.0f} | {'-':>16}{'-':>8}{'-':>7}")
        continue
    b = base[u]
    print(f"{row(u)}{a[0]:>9.2f}{a[1]:>9.2f}{a[2]:>9.0f} | {b[0]:>16.2f}{b[1]:>8.2f}{b[2]:>7.0f}"
          f" | {a[0] / b[0]:>10.2f}{a[1] / b[1]:>11.2f}{a[2] / b[2]:>9.2f}")
PY
