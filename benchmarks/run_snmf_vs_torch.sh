#!/usr/bin/env bash
# actlens against PyTorch on one SNMF iteration (the authors' update schedule, arXiv 2506.10920)
# on a 3072 x 20000 matrix with K = 100, interleaved A B A B so that the drift of a shared machine
# hits both; prints min and median per configuration and the ratio to the faster PyTorch row.
#
#   benchmarks/run_snmf_vs_torch.sh [path/to/bench_snmf]
#
# Builds nothing: the binary defaults to build/benchmarks/bench_snmf. Configurations (all with
# OMP_WAIT_POLICY=passive, as on a machine shared with other work):
#   actlens                 OMP_NUM_THREADS=2
#   torch threads=2         torch.set_num_threads(2) (OpenBLAS keeps its own 2 threads)
#   torch                   PyTorch's default threads (1 intra-op thread + OpenBLAS's 2 threads)
#   torch expanded-loss     threads=2, and the loss without the d_a x n residual (as actlens computes it;
#                           the authors' code forms the residual, which costs fresh pages every iteration)
# Environment knobs: ROUNDS (3), ITERS per process (8), WARMUP (2), D (3072), N (20000), K (100),
# PYTHON (/usr/bin/python3, Debian's python3-torch). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are left
# as the environment sets them.
# PyTorch's GEMMs go through the system libblas.so.3, which must be OpenBLAS: as root the script
# installs libopenblas0-pthread when it is not, otherwise it stops with exit status 2 (bench_env.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$here/bench_env.sh"
bench="${1:-build/benchmarks/bench_snmf}"
rounds="${ROUNDS:-3}"
iters="${ITERS:-8}"
warmup="${WARMUP:-2}"
python="${PYTHON:-/usr/bin/python3}"
shape=(--d "${D:-3072}" --n "${N:-20000}" --k "${K:-100}")

bench_prepare "$bench" bench_snmf "$python"

bench_header "${rounds} rounds x ${iters} iterations (after ${warmup} warm-up iterations) per configuration: ${shape[*]}" \
    "actlens: $bench | torch: $python, libblas.so.3 -> $bench_blas"

common=("${shape[@]}" --iters "$iters" --warmup "$warmup")
torch_snmf=("$python" "$here/torch_snmf.py" "${common[@]}")
for ((round = 1; round <= rounds; ++round)); do
    bench_round "$round" "$rounds"
    {
        OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive "$bench" "${common[@]}"
        OMP_WAIT_POLICY=passive "${torch_snmf[@]}" --threads 2
        OMP_WAIT_POLICY=passive "${torch_snmf[@]}"
        OMP_WAIT_POLICY=passive "${torch_snmf[@]}" --threads 2 --loss expanded
    } | grep '^RESULT' >>"$bench_log"
done
bench_finished

"$python" - "$bench_log" <<'PY'
import collections
import statistics
import sys

samples = collections.defaultdict(list)
for line in open(sys.argv[1]):
    fields = line.split()
    kv = dict(f.split("=", 1) for f in fields[2:])
    name = fields[1].replace("_", " ") + ("" if kv["threads"] == "default" else f" threads={kv['threads']}")
    samples[name] += [float(s) for s in kv["samples_ms"].split(",")]
stats = {name: (min(s), statistics.median(s), len(s)) for name, s in samples.items()}
torch_rows = [n for n in stats if n.startswith("torch")]
base = min(torch_rows, key=lambda n: stats[n][1])
print(f"\nms per SNMF iteration (baseline: {base}, the faster PyTorch by median)")
print(f"  {'configuration':<32} {'n':>4} {'min ms':>10} {'median ms':>10} {'ratio min':>10} {'ratio median':>13}")
for name in sorted(stats, key=lambda n: (not n.startswith("actlens"), n)):
    lo, med, n = stats[name]
    print(f"  {name:<32} {n:>4} {lo:>10.1f} {med:>10.1f} {lo / stats[base][0]:>10.3f} {med / stats[base][1]:>13.3f}")
print("\n(ratio = configuration / baseline; the target of issue 5 is <= 0.8)")
PY
