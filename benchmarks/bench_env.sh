# shellcheck shell=bash
# Functions shared by the run_*_vs_torch.sh runners, which source this file after `set -euo pipefail`
# (it is not a script of its own): the checks before a run, the temporary RESULT log and the "# ..."
# lines that describe the machine.
#
# OpenBLAS: PyTorch's GEMMs go through the system libblas.so.3, and Debian's default there is the
# reference BLAS (~20x slower), which would make every ratio meaningless. So when libblas.so.3 is
# not OpenBLAS, every runner installs libopenblas0-pthread with apt-get if it runs as root, and
# otherwise (or if that did not help) stops with exit status 2.

bench_loadavg() {
    cut -d' ' -f1-3 /proc/loadavg
}

# bench_blas_target: prints the file libblas.so.3 resolves to ("unknown" when it cannot tell).
bench_blas_target() {
    readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo unknown
}

bench_apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -y -qq "$@" >/dev/null
}

# bench_require_openblas: makes libblas.so.3 OpenBLAS (see the top of this file) or exits 2.
bench_require_openblas() {
    if [[ "$(bench_blas_target)" == *openblas* ]]; then
        return 0
    fi
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "# installing libopenblas0-pthread so that PyTorch gets an optimised BLAS" >&2
        bench_apt_get install libopenblas0-pthread ||
            { bench_apt_get update && bench_apt_get install libopenblas0-pthread; } || true
    fi
    if [[ "$(bench_blas_target)" != *openblas* ]]; then
        echo "error: libblas.so.3 is $(bench_blas_target), not OpenBLAS (PyTorch would run ~20x slower);" \
            "as root: apt-get install libopenblas0-pthread, or select it with update-alternatives" >&2
        exit 2
    fi
}

# bench_prepare BENCH TARGET PYTHON: exits 2 unless BENCH (the C++ half, built as TARGET) can run,
# PYTHON can import torch and libblas.so.3 is OpenBLAS; then sets bench_blas to what libblas.so.3
# resolves to and bench_log to a new temporary file for the RESULT lines, removed on exit.
bench_prepare() {
    if [[ ! -x "$1" ]]; then
        echo "error: '$1' is not an executable; build the $2 target first" >&2
        exit 2
    fi
    if ! "$3" -c 'import torch' 2>/dev/null; then
        echo "error: $3 cannot import torch (Debian: apt-get install python3-torch)" >&2
        exit 2
    fi
    bench_require_openblas
    # shellcheck disable=SC2034  # read by the runners
    bench_blas="$(bench_blas_target)"
    bench_log="$(mktemp)"
    trap 'rm -f "$bench_log"' EXIT
}

# bench_header LINE...: the date, CPU count and load average, then "# LINE" for every argument, then
# the OPENBLAS_* settings the runs inherit.
bench_header() {
    echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') | $(nproc) CPUs | load average: $(bench_loadavg)"
    printf '# %s\n' "$@"
    echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}"
}

# bench_round ROUND ROUNDS: the line that opens a round.
bench_round() {
    echo "# round $1/$2, load average $(bench_loadavg)"
}

bench_finished() {
    echo "# finished, load average: $(bench_loadavg)"
}
