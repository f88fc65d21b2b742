#!/usr/bin/env bash
# actlens against PyTorch on the forward of a GPT-2-small-shaped random model (batch 1, T = 64 and
# 256, logits at every position), interleaved A B A B so that the drift of a shared machine hits
# both, then per T: min and median over all samples of every configuration, and the ratios to the
# faster PyTorch configuration (the baseline).
#
#   benchmarks/run_forward_vs_torch.sh [path/to/bench_forward_vs_torch]
#
# Builds nothing: the binary defaults to build/benchmarks/bench_forward_vs_torch. Configurations:
#   actlens                 OMP_NUM_THREADS=2 (libgomp's default wait policy: idle threads spin)
#   actlens passive         OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive (idle threads sleep; much
#                           faster when other processes load the machine, slightly slower idle)
#   torch                   PyTorch's default threads (1 intra-op thread + OpenBLAS's own 2 threads)
#   torch threads=2         torch.set_num_threads(2)
#   torch avx512-blas       PyTorch's default threads with OPENBLAS_CORETYPE=SkylakeX and
#                           OPENBLAS_L2_SIZE unset in this command only: OpenBLAS's AVX-512 kernels,
#                           ~1.7x faster GEMMs here than the Haswell ones the environment selects
#                           (set TORCH_AVX512_BLAS=0 to skip this row)
# Environment knobs: ROUNDS (3), RUNS per process and T (10), WARMUP (2), T ("64,256"),
# PYTHON (/usr/bin/python3, which has Debian's python3-torch), TORCH_ENV (extra environment of the
# PyTorch runs only; default "ATEN_CPU_CAPABILITY=avx512", which makes it 7-18% faster here: set
# TORCH_ENV= to run it as installed). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are left as they are,
# except in the "torch avx512-blas" runs. The baseline is the fastest PyTorch row (by median).
# PyTorch's GEMMs go through the system libblas.so.3, which must be OpenBLAS: as root the script
# installs libopenblas0-pthread when it is not, otherwise it stops with exit status 2 (bench_env.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$here/bench_env.sh"
bench="${1:-build/benchmarks/bench_forward_vs_torch}"
rounds="${ROUNDS:-3}"
runs="${RUNS:-10}"
warmup="${WARMUP:-2}"
lengths="${T:-64,256}"
python="${PYTHON:-/usr/bin/python3}"
torch_env="${TORCH_ENV-ATEN_CPU_CAPABILITY=avx512}"
read -ra torch_env_args <<<"$torch_env"
torch_avx512_blas="${TORCH_AVX512_BLAS:-1}"

bench_prepare "$bench" bench_forward_vs_torch "$python"

bench_header "${rounds} rounds x ${runs} runs (after ${warmup} warm-up runs) per configuration, T = ${lengths}" \
    "actlens: $bench | torch: $python, TORCH_ENV='${torch_env}', libblas.so.3 -> $bench_blas"

common=(--runs "$runs" --warmup "$warmup" --T "$lengths")
torch_forward=("$python" "$here/torch_forward.py" "${common[@]}")
for ((round = 1; round <= rounds; ++round)); do
    bench_round "$round" "$rounds"
    {
        OMP_NUM_THREADS=2 "$bench" "${common[@]}"
        env "${torch_env_args[@]}" "${torch_forward[@]}"
        OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive "$bench" "${common[@]}" |
            sed 's/^RESULT actlens /RESULT actlens_passive /'
        env "${torch_env_args[@]}" "${torch_forward[@]}" --threads 2
        if [[ "$torch_avx512_blas" != 0 ]]; then
            env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=SkylakeX "${torch_env_args[@]}" "${torch_forward[@]}" \
                --label torch_avx512-blas
        fi
    } >>"$bench_log"
done
bench_finished

"$python" - "$bench_log" <<'EOF'
import collections
import statistics
import sys

samples = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    fields = line.split()
    kv = dict(f.split("=", 1) for f in fields[2:])
    name = fields[1].replace("_", " ")
    if kv["threads"] != "default" and name.startswith("torch"):
        name += f" threads={kv['threads']}"
    elif name.startswith("actlens"):
        name += f" (threads={kv['threads']})"
    samples[(int(kv["T"]), name)] += [float(s) for s in kv["samples_ms"].split(",")]

for T in sorted({t for t, _ in samples}):
    rows = {name: s for (t, name), s in samples.items() if t == T}
    stats = {name: (min(s), statistics.median(s), len(s)) for name, s in rows.items()}
    torch_rows = [n for n in stats if n.startswith("torch")]
    base = min(torch_rows, key=lambda n: stats[n][1]) if torch_rows else None
    print(f"\nT = {T}" + (f"   (baseline: {base}, the faster PyTorch by median)" if base else ""))
    print(f"  {'configuration':<28} {'n':>4} {'min ms':>10} {'median ms':>10} {'ratio min':>10} {'ratio median':>13}")
    for name in sorted(stats, key=lambda n: (not n.startswith("actlens"), n)):
        lo, med, n = stats[name]
        r_lo = f"{lo / stats[base][0]:.3f}" if base else "-"
        r_med = f"{med / stats[base][1]:.3f}" if base else "-"
        print(f"  {name:<28} {n:>4} {lo:>10.1f} {med:>10.1f} {r_lo:>10} {r_med:>13}")
print("\n(ratio = configuration / baseline; below 0.5 meets the goal of issue 3, item 4)")
EOF
