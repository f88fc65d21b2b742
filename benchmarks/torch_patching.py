#!/usr/bin/env python3
"""The PyTorch half of benchmarks/run_patching_vs_torch.sh (issue 4).

The GPT-2-small-shaped model and forward of torch_common.py (random weights, plain torch, batch 1)
and the metric logits[0, -1, 17] - logits[0, -1, 4242] (a logit difference at the last position):

  sweep  the resid_pre x position activation-patching sweep the way TransformerLens runs it
         (patching.get_act_patch_resid_pre): one forward of the clean prompt caching every
         hook_resid_pre, then for every (layer, position) one full forward of the corrupted prompt
         with a hook that overwrites that entry of blocks.<layer>.hook_resid_pre with the clean
         value, logits at every position, the metric read from them. Under torch.no_grad() (which
         TransformerLens does not use: it is the faster choice for torch). Only the first
         --sweep-patches patches are run; every patch is the same full forward, so the whole sweep
         is reported as (clean caching forward) + (patch time) * (number of patches / patches run),
         and the line says measured=K.
  grad   one forward with logits at every position, then torch.autograd.grad of the metric with
         respect to the 13 residual-stream tensors (hook_resid_pre of every block and the final
         hook_resid_post); the weights are frozen (requires_grad=False).

    torch_patching.py [--runs N] [--warmup W] [--parts sweep,grad] [--T-sweep 32] [--T-grad 64]
                      [--sweep-patches K] [--threads N] [--label NAME]

Prints lines in the format of bench_patching_vs_torch:
    RESULT torch_sweep threads=2 T=32 runs=3 min_ms=... median_ms=... samples_ms=... patches=384 measured=24
"""
import argparse
import math
import time

import torch

from torch_common import VOCAB, build_gpt2_small, forward, print_environment, print_result, set_threads

CORRECT, WRONG = 17, 4242


def metric(logits):
    return logits[0, -1, CORRECT] - logits[0, -1, WRONG]


def sweep(w, clean, corrupted, n_layers, patches_to_run):
    """TransformerLens-style sweep over the first patches_to_run (layer, position) patches; returns
    (scores, ms of the caching forward, ms per patch)."""
    T = clean.shape[1]
    t0 = time.perf_counter()
    cache = []

    def capture(layer, x):
        cache.append(x.clone())
        return x

    forward(w, clean, hook=capture)
    t1 = time.perf_counter()
    scores = []
    for i in range(patches_to_run):
        layer, pos = divmod(i, T)

        def patch(hook_layer, x, layer=layer, pos=pos):
            if hook_layer == layer:
                x = x.clone()
                x[:, pos, :] = cache[layer][:, pos, :]
            return x

        scores.append(float(metric(forward(w, corrupted, hook=patch))))
    t2 = time.perf_counter()
    return scores, (t1 - t0) * 1e3, (t2 - t1) * 1e3 / patches_to_run


def residual_gradients(w, tokens):
    resid = []

    def leaf(layer, x):  # blocks.0.hook_resid_pre as a leaf that requires grad; later ones follow
        return x.detach().requires_grad_() if layer == 0 else x

    logits = forward(w, tokens, hook=leaf, resid_list=resid)
    return torch.autograd.grad(metric(logits), resid)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--parts", default="sweep,grad")
    ap.add_argument("--T-sweep", type=int, default=32)
    ap.add_argument("--T-grad", type=int, default=64)
    ap.add_argument("--sweep-patches", type=int, default=24)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N); 0 keeps the default")
    ap.add_argument("--label", default="torch", help="prefix of the RESULT names (one word)")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    parts = set(args.parts.split(","))
    print_environment("", threads, ["ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS"])
    w, gen = build_gpt2_small()
    n_layers = len(w["layers"])

    if "sweep" in parts:
        T = args.T_sweep
        clean = torch.randint(0, VOCAB, (1, T), generator=gen)
        corrupted = torch.randint(0, VOCAB, (1, T), generator=gen)
        total = n_layers * T
        k = max(1, min(args.sweep_patches, total))
        with torch.no_grad():
            for _ in range(args.warmup):
                sweep(w, clean, corrupted, n_layers, 2)
            samples = []
            for _ in range(args.runs):
                scores, cache_ms, per_patch_ms = sweep(w, clean, corrupted, n_layers, k)
                samples.append(cache_ms + per_patch_ms * total)
        # Sanity: patching the clean value at the last layer's every position would restore the clean
        # metric; here only check that the patched runs moved the metric at all (finite, not constant).
        assert all(math.isfinite(s) for s in scores) and len(set(round(s, 4) for s in scores)) > 1
        print_result(f"{args.label}_sweep", threads, f"T={T}", samples, f"patches={total} measured={k} scaled=yes")

    if "grad" in parts:
        T = args.T_grad
        tokens = torch.randint(0, VOCAB, (1, T), generator=gen)
        for _ in range(args.warmup):
            residual_gradients(w, tokens)
        samples = []
        for _ in range(args.runs):
            t = time.perf_counter()
            grads = residual_gradients(w, tokens)
            samples.append((time.perf_counter() - t) * 1e3)
            assert len(grads) == n_layers + 1
        print_result(f"{args.label}_grad", threads, f"T={T}", samples, f"gradients={len(grads)}")


if __name__ == "__main__":
    main()
