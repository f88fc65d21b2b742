"""Shared by the PyTorch halves of the benchmarks (torch_forward.py, torch_patching.py, torch_snmf.py).

The model is GPT-2 small in shape only (12 layers, d 768, 12 heads, d_mlp 3072, vocab 50257,
learned positions, tied unembedding) with random weights, so the work matches actlens's benchmark
model but the weights do not. forward() is written in plain torch the way Hugging Face's GPT-2 runs
eagerly on torch 1.13: fused qkv projection, causal mask, softmax, tanh-GELU.

Also here: the "# torch ..." environment line and the RESULT line the run_*_vs_torch.sh runners
parse (the format of benchmarks/bench_timing.hpp). Not a script: the others `import torch_common`
(Python puts a script's own folder on sys.path).
"""
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F

N_LAYERS, D_MODEL, N_HEADS, D_MLP, VOCAB, N_CTX = 12, 768, 12, 3072, 50257, 1024


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


def build_gpt2_small(seed=2024):
    """Random GPT-2-small-shaped weights from a generator seeded with seed; prints how long the build
    took and returns (weights, generator), the generator to draw the tokens from."""
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    w = make_weights(N_LAYERS, D_MODEL, D_MLP, VOCAB, N_CTX, gen)
    print(f"# model built (random weights) in {(time.perf_counter() - t0) * 1e3:.0f} ms", flush=True)
    return w, gen


def forward(w, tokens, n_heads=N_HEADS, hook=None, resid_list=None):
    """Logits [B, T, vocab] at every position. hook(layer, x), if given, returns the tensor that
    replaces blocks.<layer>.hook_resid_pre; resid_list, if given, receives every residual-stream
    tensor (the n_layers resid_pre and the final resid_post)."""
    B, T = tokens.shape
    d = w["wte"].shape[1]
    dh = d // n_heads
    x = w["wte"][tokens] + w["wpe"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for layer, L in enumerate(w["layers"]):
        if hook is not None:
            x = hook(layer, x)
        if resid_list is not None:
            resid_list.append(x)
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
    if resid_list is not None:
        resid_list.append(x)
    x = F.layer_norm(x, (d,), w["lnf_w"], w["lnf_b"], 1e-5)
    return F.linear(x, w["wte"])  # tied unembedding


def set_threads(threads):
    """torch.set_num_threads(threads) when threads > 0; returns the label of the RESULT lines'
    threads= field ("default" when torch keeps its own)."""
    if threads > 0:
        torch.set_num_threads(threads)
        return str(threads)
    return "default"


def print_environment(what, threads_label, env_names):
    """The "# torch <version><what>, intra-op threads N (label), NAME=value, ..." line."""
    env = ", ".join(f"{name}={os.environ.get(name, '(unset)')}" for name in env_names)
    threads = f"intra-op threads {torch.get_num_threads()} ({threads_label})"
    print(f"# torch {torch.__version__}{what}, {threads}, {env}", flush=True)


def print_result(name, threads, shape, samples, extra=""):
    """RESULT <name> threads=<threads> <shape> runs= min_ms= median_ms= samples_ms= [<extra>]; shape
    is the "key=value ..." text that identifies the problem size (e.g. "T=64")."""
    print(
        f"RESULT {name} threads={threads} {shape} runs={len(samples)} min_ms={min(samples):.3f} "
        f"median_ms={statistics.median(samples):.3f} samples_ms={','.join(f'{s:.3f}' for s in samples)}"
        + (f" {extra}" if extra else ""),
        flush=True,
    )
