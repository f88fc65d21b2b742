// tests/odr/odr_model.hpp: what each translation unit of the ODR test computes, compiled once per
// translation unit (static: each keeps its own copy, built with its own flags) while the library's
// inline functions it calls are shared by the linker. See odr_main.cpp.
#pragma once

#include "../tiny_models.hpp"

#include <actlens/core/cpu.hpp>
#include <actlens/kernels/gemm.hpp>
#include <actlens/model/family.hpp>
#include <actlens/model/random_weights.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace odr {

struct results {
    std::string isa;                  // the instruction set the kernels ran with
    std::vector<float> gemm;          // a packed product large enough for every tile path
    std::vector<float> gpt2, llama;   // logits of two tiny models
};

// Deterministic values in [-1, 1) (no <random>: its distributions are not specified bit for bit).
static std::vector<float> values(std::size_t n, unsigned salt) {
    std::vector<float> v(n);
    unsigned state = 12345u + salt;
    for (auto& x : v) {
        state = state * 1664525u + 1013904223u;
        x = float(int(state >> 8) % 2001 - 1000) / 1000.0f;
    }
    return v;
}

static std::vector<float> logits(const actlens::model_config& config) {
    const auto model = actlens::make_random_transformer<float>(config, 3);
    const auto tokens = tiny::tokens(24, config.vocab_size, 1);
    const auto out = model.forward(tokens);
    return std::vector<float>(out.data(), out.data() + out.size());
}

[[maybe_unused]] static results compute() {
    results r;
    r.isa = actlens::isa_name(actlens::active_isa());
    const std::size_t rows = 37, in = 300, out = 100;
    const auto x = values(rows * in, 1), w = values(out * in, 2), bias = values(out, 3);
    const actlens::kernels::packed_weight<float> packed(w.data(), out, in);
    r.gemm.assign(rows * out, 0.0f);
    actlens::kernels::linear(x.data(), rows, packed, bias.data(), r.gemm.data());
    r.gpt2 = logits(tiny::gpt2());
    r.llama = logits(tiny::llama());
    return r;
}

} // namespace odr
