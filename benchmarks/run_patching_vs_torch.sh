#!/usr/bin/env bash
# Issue 4's benchmarks, actlens against PyTorch, on a GPT-2-small-shaped random model (batch 1,
# metric = logit difference at the last position). One command prints three ratios with the
# absolute times behind them:
#   (a) the resid_pre x position activation-patching sweep at T = 32 (12 x 32 = 384 patches):
#       actlens's plan (activation_patch) against a TransformerLens-style PyTorch loop (one full
#       forward with a hook per patch) and against actlens's own brute-force loop
#       (activation_patch_reference). Goal: actlens >= 15x faster than PyTorch.
#   (b) AtP and RelP end to end (attribution_patch over resid_pre) against one actlens forward with
#       logits at every position, at T = 32 and 64. Goal: <= 3.5x one forward.
#   (c) forward + backward to the 13 residual-stream gradients at T = 64 against PyTorch autograd
#       doing the same. Goal: <= 0.5x PyTorch's time.
# The two loops (PyTorch's and actlens's brute force) are timed on their first SWEEP_PATCHES
# patches and scaled to all 384 (each patch is the same full forward); the output says so.
# Processes run interleaved (actlens, torch, torch, ...) for ROUNDS rounds so that the drift of a
# shared machine hits all of them; each ratio uses the min over all samples and, in brackets, the
# median.
#
#   benchmarks/run_patching_vs_torch.sh [path/to/bench_patching_vs_torch]
#
# Builds nothing: the binary defaults to build/benchmarks/bench_patching_vs_torch. Threads:
#   actlens   OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
#   torch     torch.set_num_threads(2) (row "torch threads=2") and, unless TORCH_DEFAULT=0, also
#             PyTorch's default (1 intra-op thread + OpenBLAS's own 2 threads; row "torch
#             default"); the baseline of (a) and (c) is the faster of the two by median.
# Environment knobs: ROUNDS (2), RUNS per process (3), WARMUP (1), SWEEP_PATCHES (24),
# PYTHON (/usr/bin/python3, which has Debian's python3-torch), TORCH_ENV (extra environment of the
# PyTorch runs; default "ATEN_CPU_CAPABILITY=avx512", which makes it faster here). OPENBLAS_* are
# left as the environment sets them.
# PyTorch's GEMMs go through the system libblas.so.3, which must be OpenBLAS: as root the script
# installs libopenblas0-pthread when it is not, otherwise it stops with exit status 2 (bench_env.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR
source "$here/bench_env.sh"
bench="${1:-build/benchmarks/bench_patching_vs_torch}"
rounds="${ROUNDS:-2}"
runs="${RUNS:-3}"
warmup="${WARMUP:-1}"
sweep_patches="${SWEEP_PATCHES:-24}"
python="${PYTHON:-/usr/bin/python3}"
torch_env="${TORCH_ENV-ATEN_CPU_CAPABILITY=avx512}"
read -ra torch_env_args <<<"$torch_env"
torch_default="${TORCH_DEFAULT:-1}"

bench_prepare "$bench" bench_patching_vs_torch "$python"

bench_header "${rounds} rounds x ${runs} runs (after ${warmup} warm-up) per process; loops timed on ${sweep_patches} of 384 patches" \
    "actlens: $bench, OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive" \
    "torch: $python, TORCH_ENV='${torch_env}', libblas.so.3 -> $bench_blas"

torch_patching=("$python" "$here/torch_patching.py" --runs "$runs" --warmup "$warmup" --sweep-patches "$sweep_patches")
for ((round = 1; round <= rounds; ++round)); do
    bench_round "$round" "$rounds"
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive "$bench" --runs "$runs" --warmup "$warmup" \
        --ref-patches "$sweep_patches" | tee -a "$bench_log" | grep -E '^(CHECK|#)' || true
    env "${torch_env_args[@]}" "${torch_patching[@]}" --threads 2 >>"$bench_log"
    if [[ "$torch_default" != 0 ]]; then
        env "${torch_env_args[@]}" "${torch_patching[@]}" >>"$bench_log"
    fi
done
bench_finished

"$python" - "$bench_log" <<'EOF'
import collections
import statistics
import sys

samples = collections.defaultdict(list)
extra = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    fields = line.split()
    kv = dict(f.split("=", 1) for f in fields[2:])
    name = fields[1]
    if name.startswith("torch"):
        name += " threads=" + kv["threads"]
    key = (name, int(kv["T"]))
    samples[key] += [float(s) for s in kv["samples_ms"].split(",")]
    extra[key] = {k: v for k, v in kv.items() if k in ("patches", "measured")}


def stat(name, T):
    s = samples.get((name, T))
    return (min(s), statistics.median(s), len(s)) if s else None


def row(label, name, T):
    st = stat(name, T)
    if st:
        e = extra[(name, T)]
        note = f"  (timed on {e['measured']} of {e['patches']} patches, scaled)" if "measured" in e else ""
        print(f"  {label:<34} {st[2]:>3} {st[0]:>11.1f} {st[1]:>11.1f}{note}")
    return st


def ratio(text, a, b, goal):
    if a and b:
        print(f"  => {text}: {a[0] / b[0]:.2f} (median {a[1] / b[1]:.2f}); goal {goal}")


def faster_torch(what, T):
    rows = [n for (n, t) in samples if t == T and n.startswith(f"torch_{what}")]
    return min(rows, key=lambda n: stat(n, T)[1]) if rows else None


header = f"  {'configuration':<34} {'n':>3} {'min ms':>11} {'median ms':>11}"
print("\n(a) resid_pre x position activation-patching sweep, T = 32, 384 patches")
print(header)
fast = row("actlens activation_patch", "actlens_sweep", 32)
ref = row("actlens activation_patch_reference", "actlens_sweep_reference", 32)
for n in sorted(n for (n, t) in samples if t == 32 and n.startswith("torch_sweep")):
    row(n.replace("_", " ", 1), n, 32)
base = faster_torch("sweep", 32)
if base:
    ratio(f"speed-up of actlens over {base.replace('_', ' ', 1)} (torch / actlens)", stat(base, 32), fast, ">= 15")
ratio("speed-up of actlens over its brute-force loop", ref, fast, "(none)")

print("\n(b) attribution_patch end to end over resid_pre, against one actlens forward (all logits)")
for T in sorted({t for (n, t) in samples if n == "actlens_atp"}):
    print(f" T = {T}\n" + header)
    fwd = row("actlens forward", "actlens_forward", T)
    atp = row("actlens AtP", "actlens_atp", T)
    relp = row("actlens RelP", "actlens_relp", T)
    ratio("AtP / forward", atp, fwd, "<= 3.5")
    ratio("RelP / forward", relp, fwd, "<= 3.5")

print("\n(c) forward + backward to the 13 residual-stream gradients, T = 64")
print(header)
grad = row("actlens forward + backward", "actlens_grad", 64)
for n in sorted(n for (n, t) in samples if t == 64 and n.startswith("torch_grad")):
    row(n.replace("_", " ", 1) + " (autograd)", n, 64)
base = faster_torch("grad", 64)
if base:
    ratio(f"actlens / {base.replace('_', ' ', 1)}", grad, stat(base, 64), "<= 0.5")
EOF
