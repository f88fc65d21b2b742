#!/usr/bin/env python3
"""The PyTorch half of benchmarks/run_snmf_vs_torch.sh: one SNMF iteration in plain torch.

The updates of the SNMF authors' NMFSemiNMF.fit (arXiv 2506.10920), written as a PyTorch user
writes them, on A [d_a, n] = max(0, N(0, 1)) with F = Z [d_a, K] and G = Yᵀ [n, K]:

    F = A @ G @ inv(GᵀG + λI)                                    exact least squares
    keep |F[:, j]| >= its ceil(s·d_a)-th largest value            winner-take-all
    c = max(‖G[:, j]‖, 1e-8); G /= c; F *= c                      unit columns of G
    P = Aᵀ F; Q = FᵀF; G *= sqrt((P⁺ + G Q⁻) / (P⁻ + G Q⁺ + 1e-6))
    loss = ‖A − F Gᵀ‖²_F; keep clones of (F, G) when it improves

    torch_snmf.py [--d 3072] [--n 20000] [--k 100] [--iters 12] [--warmup 2] [--threads N]
                  [--loss direct|expanded]

--loss direct (the authors' way) forms the residual A − F Gᵀ, a d_a x n temporary (245 MB here, fresh
pages every iteration); --loss expanded computes the same number as actlens does,
‖A‖² − 2 Σ P ⊙ G + Σ Q ⊙ GᵀG, with no d_a x n temporary (the faster PyTorch a user could write).

--threads calls torch.set_num_threads(N). Prints the line the runner parses:
    RESULT torch threads=2 d=3072 n=20000 k=100 runs=12 min_ms=... median_ms=... samples_ms=...
"""
import argparse
import math
import time

import torch

from torch_common import print_result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--d", type=int, default=3072)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--sparsity", type=float, default=0.01)
    p.add_argument("--loss", choices=["direct", "expanded"], default="direct")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(a.d, a.n, generator=gen).clamp_min_(0.0)
    K, lam, eps = a.k, 1e-6, 1e-6
    G = torch.rand(a.n, K, generator=gen).clamp_min_(1e-6)
    eye = torch.eye(K)
    a_sq = float((A * A).sum())
    keep = math.ceil(a.sparsity * a.d)
    best = float("inf")
    samples = []
    with torch.no_grad():
        for it in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            F = A @ G @ torch.linalg.inv(G.T @ G + lam * eye)
            theta = F.abs().topk(keep, dim=0).values[-1]
            F = F * (F.abs() >= theta)
            c = G.norm(dim=0).clamp_min(1e-8)
            G = G / c
            F = F * c
            P = A.T @ F
            Q = F.T @ F
            Pp, Pn = (P.abs() + P) / 2, (P.abs() - P) / 2
            Qp, Qn = (Q.abs() + Q) / 2, (Q.abs() - Q) / 2
            G = G * torch.sqrt((Pp + G @ Qn) / (Pn + G @ Qp + eps))
            if a.loss == "direct":
                loss = torch.linalg.norm(A - F @ G.T).item() ** 2
            else:
                loss = a_sq - 2 * float((P * G).sum()) + float((Q * (G.T @ G)).sum())
            if loss < best - 1e-4:
                best = loss
                best_f, best_g = F.clone(), G.clone()
            if it >= a.warmup:
                samples.append((time.perf_counter() - t0) * 1e3)
    threads = a.threads if a.threads else "default"
    label = "torch" if a.loss == "direct" else "torch_expanded-loss"
    print_result(label, threads, f"d={a.d} n={a.n} k={K}", samples)
    print(f"# loss: last {loss:.6g}, best {best:.6g}; kept {best_f.shape} {best_g.shape}")


if __name__ == "__main__":
    main()
