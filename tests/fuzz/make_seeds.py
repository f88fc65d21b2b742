#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz harness: tests/fuzz/make_seeds.py OUT_DIR.

OUT_DIR/<harness>/ receives valid files from the repository's fixtures (small models, tokenizers,
arrays) plus a few written here (a llama2.c checkpoint of 1 layer, the inputs that found the
fuzzing bugs of issue 13). Two-file harnesses (huggingface, bpe_vocab_merges) take
fuzz_common.hpp's layout: a 4-byte little-endian length, the first file, the second file.
"""
import os
import random
import shutil
import struct
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")


def two_files(first, second):
    return struct.pack("<I", len(first)) + first + second


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def llama2c_checkpoint(dim=8, hidden=16, layers=1, heads=2, kv_heads=2, vocab=8, seq_len=4, shared=True):
    """A llama2.c checkpoint (run.c's layout) with random weights."""
    rng = random.Random(13)
    head = dim // heads
    floats = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * dim * kv_heads * head +
              layers * dim * dim + layers * dim + 3 * layers * dim * hidden + dim + seq_len * head +
              (0 if shared else vocab * dim))
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab, seq_len)
    return header + struct.pack("<%df" % floats, *[rng.uniform(-0.5, 0.5) for _ in range(floats)])


def gguf_zero_extent():
    """Issue 13 finding A: an F32 tensor of ne [0, 2^40, 2^40] next to a valid one."""
    def string(s):
        return struct.pack("<Q", len(s)) + s.encode()
    out = b"GGUF" + struct.pack("<IQQ", 3, 2, 1)
    out += string("general.architecture") + struct.pack("<I", 8) + string("test")
    out += string("a") + struct.pack("<I", 1) + struct.pack("<Q", 2) + struct.pack("<IQ", 0, 0)
    out += string("b") + struct.pack("<I", 3) + struct.pack("<3Q", 0, 1 << 40, 1 << 40) + struct.pack("<IQ", 0, 32)
    out += b"\0" * (-len(out) % 32)
    return out + b"\0" * 64


def safetensors(header):
    return struct.pack("<Q", len(header)) + header


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    seeds = {name: [] for name in ("gguf_file", "gguf_model", "gguf_vocab", "control_vector", "safetensors",
                                   "huggingface", "llama2c_model", "llama2c_tokenizer", "npy",
                                   "bpe_vocab_merges", "tokenizer_json")}
    gguf = os.path.join(FIX, "gguf")
    for name in ("metadata_types.gguf", "control_vector.gguf", "stories260K_q8_0.gguf"):
        seeds["gguf_file"].append((name, read(gguf, name)))
    seeds["gguf_file"].append(("zero_extent.gguf", gguf_zero_extent()))
    for name in ("stories260K_q8_0.gguf", "stories260K_f16.gguf"):
        seeds["gguf_model"].append((name, read(gguf, name)))
    seeds["gguf_vocab"].append(("stories260K_q8_0.gguf", read(gguf, "stories260K_q8_0.gguf")))
    seeds["control_vector"].append(("control_vector.gguf", read(gguf, "control_vector.gguf")))

    hf = os.path.join(FIX, "hf")
    for model in ("gpt2_tiny", "gpt2_tiny_bf16", "llama_tiny", "llama_tiny_bf16", "qwen2_tiny"):
        config, weights = read(hf, model, "config.json"), read(hf, model, "model.safetensors")
        seeds["safetensors"].append((model + ".safetensors", weights))
        seeds["huggingface"].append((model, two_files(config, weights)))
        # Finding B: nesting deep enough to overflow the stack in nlohmann's dump() or destructor.
        if model == "llama_tiny":
            deep = config.replace(b'"architectures": [', b'"architectures": [' + b"[" * 24000 + b"]" * 24000 + b",")
            seeds["huggingface"].append((model + "_deep", two_files(deep, weights)))
    seeds["safetensors"].append(("zero_extent.safetensors", safetensors(
        b'{"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}')))
    seeds["safetensors"].append(("deep.safetensors", safetensors(b'{"w":' + b"[" * 24000 + b"]" * 24000 + b"}")))

    seeds["llama2c_model"].append(("tiny_shared.bin", llama2c_checkpoint()))
    seeds["llama2c_model"].append(("tiny_gqa_unshared.bin", llama2c_checkpoint(heads=4, kv_heads=2, shared=False)))
    seeds["llama2c_tokenizer"].append(("tok512.bin", read(ROOT, "examples", "models", "stories260K", "tok512.bin")))

    for name in sorted(os.listdir(FIX)):
        if name.endswith(".npy"):
            seeds["npy"].append((name, read(FIX, name)))
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296), }\n"
    seeds["npy"].append(("zero_extent.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header))

    bpe = os.path.join(FIX, "gpt2_bpe", "small")
    seeds["bpe_vocab_merges"].append(("small", two_files(read(bpe, "vocab.json"), read(bpe, "merges.txt"))))
    for name in ("tokenizer.json", "tokenizer_array_merges.json"):
        seeds["tokenizer_json"].append((name, read(bpe, name)))

    for harness, files in seeds.items():
        directory = os.path.join(out, harness)
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        for name, data in files:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
    print("seeds: " + ", ".join("%s %d" % (h, len(f)) for h, f in seeds.items()))


if __name__ == "__main__":
    main()
