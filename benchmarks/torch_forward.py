#!/usr/bin/env python3
"""The PyTorch half of benchmarks/run_forward_vs_torch.sh: the GPT-2-small-shaped forward of
torch_common.py (random weights, batch 1, logits at every position) under torch.no_grad(). Only the
shapes, and so the work, match actlens's benchmark model.

    torch_forward.py [--runs N] [--warmup W] [--T 64,256] [--threads N] [--label NAME]

--threads calls torch.set_num_threads(N) (the intra-op pool); without it torch keeps its default.
--label names the configuration in the RESULT lines (default "torch"; one word).
Prints, per T, the line the runner parses (same format as bench_forward_vs_torch):
    RESULT torch threads=default T=64 runs=20 min_ms=... median_ms=... samples_ms=t1,t2,...
"""
import argparse
import time

import torch

from torch_common import VOCAB, build_gpt2_small, forward, print_environment, print_result, set_threads


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--T", default="64,256")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N); 0 keeps the default")
    ap.add_argument("--label", default="torch", help="configuration name in the RESULT lines (one word)")
    args = ap.parse_args()
    label = set_threads(args.threads)
    print_environment(
        " GPT-2-small-shaped forward, batch 1", label, ["ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]
    )
    w, gen = build_gpt2_small()
    with torch.no_grad():
        for T in [int(t) for t in args.T.split(",") if t]:
            tokens = torch.randint(0, VOCAB, (1, T), generator=gen)
            sink = 0.0
            for _ in range(args.warmup):
                sink += float(forward(w, tokens)[0, 0, 0])
            samples = []
            for _ in range(args.runs):
                t = time.perf_counter()
                out = forward(w, tokens)
                samples.append((time.perf_counter() - t) * 1e3)
                sink += float(out[0, 0, 0])
            print_result(args.label, label, f"T={T}", samples)


if __name__ == "__main__":
    main()
