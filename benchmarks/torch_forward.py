#!/usr/bin/env python3
"""The PyTorch half of benchmarks/run_forward_vs_torch.sh.

An independent GPT-2 forward in plain torch (no transformers package): the shapes of GPT-2 small
(12 layers, d 768, 12 heads, d_mlp 3072, vocab 50257, learned positions, tied unembedding), random
weights, batch 1, logits at every position, under torch.no_grad(). The weights are not actlens's:
only the shapes (and so the work) are the same. It is written the way Hugging Face's GPT-2 runs in
eager mode on torch 1.13: a fused qkv projection, scores masked with a causal mask, softmax,
tanh-GELU.

    torch_forward.py [--runs N] [--warmup W] [--T 64,256] [--threads N] [--label NAME]

--threads calls torch.set_num_threads(N) (the intra-op pool); without it torch keeps its default.
--label names the configuration in the RESULT lines (default "torch"; one word).
Prints, per T, the line the runner parses (same format as bench_forward_vs_torch):
    RESULT torch threads=default T=64 runs=20 min_ms=... median_ms=... samples_ms=t1,t2,...
"""
import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F


def make_weights(n_layers, d, d_mlp, vocab, n_ctx, gen):
    def normal(*shape, std):
        return torch.randn(*shape, generator=gen) * std

    s = 1.0 / math.sqrt(d)
    w = {
        "wte": normal(vocab, d, std=1.0),
        "wpe": normal(n_ctx, d, std=0.5),
        "lnf_w": 1.0 + normal(d, std=0.1),
        "lnf_b": normal(d, std=0.1),
        "layers": [],
    }
    for _ in range(n_layers):
        w["layers"].append(
            {
                "ln1_w": 1.0 + normal(d, std=0.1),
                "ln1_b": normal(d, std=0.1),
                "qkv_w": normal(3 * d, d, std=s),  # [out, in], as nn.Linear
                "qkv_b": normal(3 * d, std=0.1),
                "o_w": normal(d, d, std=s),
                "o_b": normal(d, std=0.1),
                "ln2_w": 1.0 + normal(d, std=0.1),
                "ln2_b": normal(d, std=0.1),
                "fc_w": normal(d_mlp, d, std=s),
                "fc_b": normal(d_mlp, std=0.1),
                "proj_w": normal(d, d_mlp, std=1.0 / math.sqrt(d_mlp)),
                "proj_b": normal(d, std=0.1),
            }
        )
    return w


def forward(w, tokens, n_heads):
    B, T = tokens.shape
    d = w["wte"].shape[1]
    dh = d // n_heads
    x = w["wte"][tokens] + w["wpe"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for L in w["layers"]:
        a = F.layer_norm(x, (d,), L["ln1_w"], L["ln1_b"], 1e-5)
        q, k, v = F.linear(a, L["qkv_w"], L["qkv_b"]).split(d, dim=2)
        q = q.view(B, T, n_heads, dh).transpose(1, 2)
        k = k.view(B, T, n_heads, dh).transpose(1, 2)
        v = v.view(B, T, n_heads, dh).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)
        scores = scores.masked_fill(~mask, float("-inf"))
        z = torch.matmul(torch.softmax(scores, dim=-1), v)
        z = z.transpose(1, 2).reshape(B, T, d)
        x = x + F.linear(z, L["o_w"], L["o_b"])
        m = F.layer_norm(x, (d,), L["ln2_w"], L["ln2_b"], 1e-5)
        h = F.gelu(F.linear(m, L["fc_w"], L["fc_b"]), approximate="tanh")
        x = x + F.linear(h, L["proj_w"], L["proj_b"])
    x = F.layer_norm(x, (d,), w["lnf_w"], w["lnf_b"], 1e-5)
    return F.linear(x, w["wte"])  # tied unembedding: [B, T, vocab]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--T", default="64,256")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N); 0 keeps the default")
    ap.add_argument("--label", default="torch", help="configuration name in the RESULT lines (one word)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    label = str(args.threads) if args.threads > 0 else "default"
    print(
        f"# torch {torch.__version__} GPT-2-small-shaped forward, batch 1, intra-op threads {torch.get_num_threads()} "
        f"({label}), ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '(unset)')}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}",
        flush=True,
    )
    gen = torch.Generator().manual_seed(2024)
    t0 = time.perf_counter()
    w = make_weights(12, 768, 3072, 50257, 1024, gen)
    print(f"# model built (random weights) in {(time.perf_counter() - t0) * 1e3:.0f} ms", flush=True)
    with torch.no_grad():
        for T in [int(t) for t in args.T.split(",") if t]:
            tokens = torch.randint(0, 50257, (1, T), generator=gen)
            sink = 0.0
            for _ in range(args.warmup):
                sink += float(forward(w, tokens, 12)[0, 0, 0])
            samples = []
            for _ in range(args.runs):
                t = time.perf_counter()
                out = forward(w, tokens, 12)
                samples.append((time.perf_counter() - t) * 1e3)
                sink += float(out[0, 0, 0])
            print(
                f"RESULT {args.label} threads={label} T={T} runs={len(samples)} min_ms={min(samples):.3f} "
                f"median_ms={statistics.median(samples):.3f} samples_ms={','.join(f'{s:.3f}' for s in samples)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
