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
    string = gguf_writer.string
    out = b"GGUF" + struct.pack("<IQQ", 3, 2, 1)
    out += string("general.architecture") + struct.pack("<I", 8) + string("test")
    out += string("a") + struct.pack("<I", 1) + struct.pack("<Q", 2) + struct.pack("<IQ", 0, 0)
    out += string("b") + struct.pack("<I", 3) + struct.pack("<3Q", 0, 1 << 40, 1 << 40) + struct.pack("<IQ", 0, 32)
    out += b"\0" * (-len(out) % 32)
    return out + b"\0" * 64


class gguf_writer:
    """A minimal GGUF v3 writer (metadata and F32/F16/Q8_0/Q4_0 tensors), enough for the tiny seeds
    below: small files let the fuzzer mutate headers and tensors instead of megabytes of weights."""
    U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
    TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 8}

    def __init__(self, arch):
        self.kv, self.tensors = [], []
        self.add(self.STRING, "general.architecture", arch)

    @staticmethod
    def string(s):
        b = s.encode() if isinstance(s, str) else s
        return struct.pack("<Q", len(b)) + b

    def value(self, kind, v):
        if kind == self.STRING:
            return self.string(v)
        if kind == self.BOOL:
            return struct.pack("<?", v)
        return struct.pack({self.U32: "<I", self.I32: "<i", self.F32: "<f"}[kind], v)

    def add(self, kind, key, v):
        self.kv.append(self.string(key) + struct.pack("<I", kind) + self.value(kind, v))

    def add_array(self, kind, key, values):
        self.kv.append(self.string(key) + struct.pack("<IIQ", self.ARRAY, kind, len(values)) +
                       b"".join(self.value(kind, v) for v in values))

    def add_tensor(self, name, rows, dtype):
        """rows: a list of rows (ne[0] = row length), or one row for a vector."""
        is_matrix = isinstance(rows[0], list)
        matrix = rows if is_matrix else [rows]
        data = b"".join(encode_row(r, dtype) for r in matrix)
        ne = [len(matrix[0])] + ([len(matrix)] if is_matrix else [])
        self.tensors.append((name, ne, self.TYPES[dtype], data))

    def bytes(self):
        out = b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)) + b"".join(self.kv)
        offset, blobs = 0, b""
        for name, ne, kind, data in self.tensors:
            out += self.string(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
            out += struct.pack("<IQ", kind, offset)
            blobs += data + b"\0" * (-len(data) % 32)
            offset = len(blobs)
        return out + b"\0" * (-len(out) % 32) + blobs


def encode_row(row, dtype):
    """One row in a ggml type; Q8_0 and Q4_0 as ggml quantises them (blocks of 32, an f16 scale)."""
    if dtype == "F32":
        return struct.pack("<%df" % len(row), *row)
    if dtype == "F16":
        return struct.pack("<%de" % len(row), *row)
    out = b""
    for b in range(0, len(row), 32):
        block = row[b:b + 32]
        peak = max(block, key=abs)
        if dtype == "Q8_0":
            d = abs(peak) / 127.0
            out += struct.pack("<e", d) + struct.pack("<32b", *[round(x / d) if d else 0 for x in block])
        else:  # Q4_0: q = x / d + 8 in [0, 15], d = peak / -8; byte j holds elements j and j + 16
            d = peak / -8.0
            q = [min(15, int(x / d + 8.5)) if d else 8 for x in block]
            out += struct.pack("<e", d) + bytes(q[j] | q[j + 16] << 4 for j in range(16))
    return out


def llama_vocab(writer):
    """A sentencepiece vocabulary as llama.cpp stores it: <unk>, <s>, </s>, the 256 byte tokens and a
    few pieces, so that the smallest valid llama vocabulary (259 + pieces) is exercised."""
    pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["\u2581", "\u2581a", "a", "b"]
    writer.add(writer.STRING, "tokenizer.ggml.model", "llama")
    writer.add_array(writer.STRING, "tokenizer.ggml.tokens", pieces)
    writer.add_array(writer.F32, "tokenizer.ggml.scores", [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0])
    writer.add_array(writer.I32, "tokenizer.ggml.token_type", [2, 3, 3] + [6] * 256 + [1] * 4)
    for key, v in (("bos", 1), ("eos", 2), ("unknown", 0)):
        writer.add(writer.U32, "tokenizer.ggml.%s_token_id" % key, v)
    return len(pieces)


def tiny_llama_gguf(dtype):
    """A 1-layer Llama (d 32, 2 heads, 1 KV head, d_mlp 32) with its vocabulary: a few KB in place of
    the 344 KB stories260K files, so the model harness runs thousands of inputs a second."""
    rng = random.Random(7)
    w = gguf_writer("llama")
    vocab = llama_vocab(w)
    d, ff, heads, kv_heads, context = 32, 32, 2, 1, 16
    for key, v in (("context_length", context), ("embedding_length", d), ("feed_forward_length", ff),
                   ("block_count", 1), ("attention.head_count", heads), ("attention.head_count_kv", kv_heads),
                   ("rope.dimension_count", d // heads)):
        w.add(w.U32, "llama." + key, v)
    w.add(w.F32, "llama.attention.layer_norm_rms_epsilon", 1e-5)

    def matrix(name, rows, cols):
        w.add_tensor(name, [[rng.uniform(-0.5, 0.5) for _ in range(cols)] for _ in range(rows)], dtype)

    def norm(name):
        w.add_tensor(name, [1.0 + rng.uniform(-0.1, 0.1) for _ in range(d)], "F32")

    matrix("token_embd.weight", vocab, d)
    norm("blk.0.attn_norm.weight")
    head = d // heads
    for name, rows in (("attn_q", d), ("attn_k", kv_heads * head), ("attn_v", kv_heads * head), ("attn_output", d)):
        matrix("blk.0.%s.weight" % name, rows, d)
    norm("blk.0.ffn_norm.weight")
    matrix("blk.0.ffn_gate.weight", ff, d)
    matrix("blk.0.ffn_up.weight", ff, d)
    matrix("blk.0.ffn_down.weight", d, ff)
    norm("output_norm.weight")
    return w.bytes()


def gpt2_vocab_gguf():
    """A byte-level BPE vocabulary as llama.cpp stores GPT-2's (tokens, merges, pre = "gpt-2")."""
    w = gguf_writer("gpt2")
    visible = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    shifted = [b for b in range(256) if b not in visible]
    bytes_to_text = {b: chr(b) for b in visible}
    bytes_to_text.update({b: chr(256 + i) for i, b in enumerate(shifted)})
    tokens = [bytes_to_text[b] for b in range(256)] + ["\u0120a", "ab", "<|endoftext|>"]
    w.add(w.STRING, "tokenizer.ggml.model", "gpt2")
    w.add(w.STRING, "tokenizer.ggml.pre", "gpt-2")
    w.add_array(w.STRING, "tokenizer.ggml.tokens", tokens)
    w.add_array(w.I32, "tokenizer.ggml.token_type", [1] * 258 + [3])
    w.add_array(w.STRING, "tokenizer.ggml.merges", ["\u0120 a", "a b"])
    w.add(w.U32, "tokenizer.ggml.bos_token_id", 258)
    w.add(w.U32, "tokenizer.ggml.eos_token_id", 258)
    return w.bytes()


def safetensors(header):
    return struct.pack("<Q", len(header)) + header


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    seeds = {name: [] for name in ("gguf_file", "gguf_model", "gguf_vocab", "control_vector", "safetensors",
                                   "huggingface", "llama2c_model", "llama2c_tokenizer", "npy",
                                   "bpe_vocab_merges", "tokenizer_json", "json")}
    gguf = os.path.join(FIX, "gguf")
    for name in ("metadata_types.gguf", "control_vector.gguf"):
        seeds["gguf_file"].append((name, read(gguf, name)))
    seeds["gguf_file"].append(("zero_extent.gguf", gguf_zero_extent()))
    for dtype in ("F32", "F16", "Q8_0", "Q4_0"):
        name = "tiny_llama_%s.gguf" % dtype.lower()
        seeds["gguf_model"].append((name, tiny_llama_gguf(dtype)))
        if dtype in ("F16", "Q8_0"):
            seeds["gguf_file"].append((name, tiny_llama_gguf(dtype)))
    seeds["gguf_vocab"].append(("tiny_llama_q8_0.gguf", tiny_llama_gguf("Q8_0")))
    seeds["gguf_vocab"].append(("gpt2_vocab.gguf", gpt2_vocab_gguf()))
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

    # The JSON reader (differential against nlohmann): a small tokenizer.json, a config, and the edges.
    seeds["json"].append(("tokenizer.json", read(bpe, "tokenizer.json")))
    seeds["json"].append(("edges.json", (
        '{"n": [0, -0, 1.5e-3, -9223372036854775808, 18446744073709551615, 18446744073709551616, 1e-400],'
        ' "s": "\\u00e9\\ud83d\\ude00\\n\\"\\/\\t", "u": "\u00e9\u20ac\U0001F600",'
        ' "o": {"b": true, "a": null, "e": [], "f": {}}}').encode("utf-8")))
    seeds["json"].append(("deep.json", b"[" * 128 + b"]" * 128))
    seeds["json"].append(("repeated.json", b'{"a": 1, "b": {"c": 2, "c": 3}}'))

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
