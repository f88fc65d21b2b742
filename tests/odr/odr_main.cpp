// tests/odr/odr_main.cpp: the one-definition-rule test (README "CPU instruction sets").
//
// odr_native.cpp (built with -march=native) and odr_plain.cpp (built without -m flags) compute the
// same things through the library's inline functions: a packed GEMM and the logits of two tiny
// models. The linker keeps one copy of each inline function, chosen by link order, and two
// executables link the translation units in the two orders. Each prints the instruction set the
// kernels ran with and the bits of its results, and fails unless its two translation units agree
// bit for bit; given the other executable's output (check_odr.cmake), it also requires the same
// instruction set and GEMM bits, and logits within 1e-5 of the largest.
//
// Why not the logits bit for bit: the float GEMM kernels are compiled per instruction set whatever
// the flags (kernels/detail/sgemm.hpp) and agree exactly, but the rest of a forward pass (norms,
// softmax, activations: xsimd; attention: Eigen) is compiled with the flags of the translation unit
// whose copy the linker kept: 16-lane AVX-512 sums and FMAs there, 4-lane SSE2 sums without FMA in
// the plain copy. Same operations in another order: a few float roundings apart (measured here:
// 2.6e-7 and 6.7e-7 of the largest logit); 1e-5 leaves margin for the ~10 such steps a logit goes
// through while a wrong kernel is off by O(1). Before the kernels were dispatched at run time, the
// plain translation unit's GEMM was Eigen's or the AVX-512 kernel depending on the link order.
#include "odr_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

odr::results odr_native();
odr::results odr_plain();

namespace {

void print(const char* what, const std::vector<float>& v) {
    std::printf("%s", what);
    for (float x : v) {
        std::uint32_t bits;
        std::memcpy(&bits, &x, sizeof bits);
        std::printf(" %08x", bits);
    }
    std::printf("\n");
}

// The lines another run printed: name -> values (the isa line keeps its word in `isa`).
std::map<std::string, std::vector<float>> read(const char* path, std::string& isa) {
    std::map<std::string, std::vector<float>> lines;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string name, word;
        words >> name;
        if (name == "isa") {
            words >> isa;
            continue;
        }
        std::vector<float>& v = lines[name];
        while (words >> word) {
            const auto bits = std::uint32_t(std::stoul(word, nullptr, 16));
            float x;
            std::memcpy(&x, &bits, sizeof x);
            v.push_back(x);
        }
    }
    return lines;
}

// max |a - b| / max |b|, or infinity when the sizes differ.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size() || b.empty()) return INFINITY;
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < b.size(); ++i) {
        diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::abs(double(b[i])));
    }
    return diff / scale;
}

// Compares with the other link order's output: the same instruction set and GEMM bits; logits
// within `logits_tol` (see the top of the file).
bool compare(const char* path, const odr::results& mine) {
    constexpr double logits_tol = 1e-5;
    std::string isa;
    auto other = read(path, isa);
    bool ok = isa == mine.isa && other["gemm"] == mine.gemm;
    std::fprintf(stderr, "other link order: isa %s, gemm %s\n", isa.c_str(),
                 other["gemm"] == mine.gemm ? "identical" : "DIFFERENT");
    for (const auto& [name, logits] : {std::pair{"gpt2", &mine.gpt2}, std::pair{"llama", &mine.llama}}) {
        const double err = rel_err(*logits, other[name]);
        std::fprintf(stderr, "other link order: %s logits differ by %.3g of the largest (bound %.0e)\n", name, err,
                     logits_tol);
        ok = ok && err <= logits_tol;
    }
    return ok;
}

} // namespace

int main(int argc, char** argv) {
    const odr::results native = odr_native(), plain = odr_plain();
    std::printf("isa %s\n", native.isa.c_str());
    print("gemm", native.gemm);
    print("gpt2", native.gpt2);
    print("llama", native.llama);
    const bool same = native.isa == plain.isa && native.gemm == plain.gemm && native.gpt2 == plain.gpt2 &&
                      native.llama == plain.llama;
    std::fprintf(stderr, "%s\n", same ? "the two translation units agree bit for bit"
                                      : "FAILED: the two translation units differ");
    const bool agree = argc < 2 || compare(argv[1], native);
    if (!agree) std::fprintf(stderr, "FAILED: the other link order differs\n");
    return same && agree ? 0 : 1;
}
