// Tests of actlens/kernels/gemm.hpp: `linear` against a naive long double product, the input and
// weight gradients against central finite differences in double and against naive products. The
// fast float path (on the instruction set the CPU picks, AVX-512 here: register tile 8 x 48, K
// blocks of 256, row blocks of 128, a dot-product path for <= 4 rows of unpacked weights, a
// matrix-vector path for one row of packed weights) is checked at shapes that hit every tail, with
// and without pre-packed weights; test_kernels_isa.cpp checks the other instruction sets.
#include "kernel_checks.hpp"

#include <catch2/catch.hpp>

#include <actlens/kernels/gemm.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

namespace {

using namespace kernel_checks;

namespace k = actlens::kernels;

const std::size_t sizes[] = {1, 7, 17, 64, 100};

// Gradient checks: L = sum_ij G_ij y_ij is linear in x and in w, so central differences have no
// truncation error; the rounding error eps |L| / h ~ 1e-16 * 1e3 / 1e-6 = 1e-7 absolute against
// gradients of size ~1..10, inside 1e-6 relative to the largest one.

} // namespace

TEMPLATE_TEST_CASE("linear: matches a naive product with bias, accumulate and row strides",
                   "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t in : sizes) {
        for (std::size_t out : {std::size_t(1), std::size_t(5), std::size_t(33)}) {
            for (std::size_t rows : {std::size_t(1), std::size_t(9)}) {
                const std::size_t ldx = in + rng() % 3, ldy = out + rng() % 3;
                INFO("rows " << rows << " in " << in << " out " << out << " ldx " << ldx << " ldy "
                             << ldy);
                const auto x = uniform<T>(rng, rows * ldx, -1, 1),
                           w = uniform<T>(rng, out * in, -1, 1);
                const auto bias = uniform<T>(rng, out, -1, 1);
                const auto y0 = uniform<T>(rng, rows * ldy, -1, 1);
                for (int mode = 0; mode < 3; ++mode) {
                    const bool with_bias = mode >= 1, accumulate = mode == 2;
                    auto y = y0;
                    k::linear(x.data(), rows, in, w.data(), out, with_bias ? bias.data() : nullptr,
                              y.data(), accumulate, ldx, ldy);
                    for (std::size_t r = 0; r < rows; ++r) {
                        for (std::size_t o = 0; o < out; ++o) {
                            long double e = accumulate ? (long double)y0[r * ldy + o] : 0.0L;
                            for (std::size_t i = 0; i < in; ++i)
                                e += (long double)x[r * ldx + i] * w[o * in + i];
                            if (with_bias) e += bias[o];
                            CHECK(std::abs(y[r * ldy + o] - e) <= product_tol<T>(in));
                        }
                        for (std::size_t o = out; o < ldy; ++o)
                            CHECK(y[r * ldy + o] == y0[r * ldy + o]);
                    }
                }
            }
        }
    }
}

TEMPLATE_TEST_CASE("linear_backward_input: is dy w, checked against a naive product", "[kernels]",
                   float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t in : sizes) {
        const std::size_t out = 1 + rng() % 40, rows = 1 + rng() % 6;
        const std::size_t lddy = out + rng() % 3, lddx = in + rng() % 3;
        INFO("rows " << rows << " in " << in << " out " << out);
        const auto dy = uniform<T>(rng, rows * lddy, -1, 1), w = uniform<T>(rng, out * in, -1, 1);
        const auto dx0 = uniform<T>(rng, rows * lddx, -1, 1);
        for (bool accumulate : {false, true}) {
            auto dx = dx0;
            k::linear_backward_input(dy.data(), rows, out, w.data(), in, dx.data(), accumulate,
                                     lddy, lddx);
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t i = 0; i < in; ++i) {
                    long double e = accumulate ? (long double)dx0[r * lddx + i] : 0.0L;
                    for (std::size_t o = 0; o < out; ++o)
                        e += (long double)dy[r * lddy + o] * w[o * in + i];
                    CHECK(std::abs(dx[r * lddx + i] - e) <= product_tol<T>(out));
                }
                for (std::size_t i = in; i < lddx; ++i)
                    CHECK(dx[r * lddx + i] == dx0[r * lddx + i]);
            }
        }
    }
}

TEMPLATE_TEST_CASE("linear_backward_weight: is dy^T x, checked against a naive product",
                   "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t in : sizes) {
        const std::size_t out = 1 + rng() % 40, rows = 1 + rng() % 20;
        const std::size_t ldx = in + rng() % 3, lddy = out + rng() % 3;
        INFO("rows " << rows << " in " << in << " out " << out);
        const auto x = uniform<T>(rng, rows * ldx, -1, 1), dy = uniform<T>(rng, rows * lddy, -1, 1);
        const auto dw0 = uniform<T>(rng, out * in, -1, 1);
        for (bool accumulate : {false, true}) {
            auto dw = dw0;
            k::linear_backward_weight(x.data(), rows, in, dy.data(), out, dw.data(), accumulate,
                                      ldx, lddy);
            for (std::size_t o = 0; o < out; ++o)
                for (std::size_t i = 0; i < in; ++i) {
                    long double e = accumulate ? (long double)dw0[o * in + i] : 0.0L;
                    for (std::size_t r = 0; r < rows; ++r)
                        e += (long double)dy[r * lddy + o] * x[r * ldx + i];
                    CHECK(std::abs(dw[o * in + i] - e) <= product_tol<T>(rows));
                }
        }
    }
}

TEST_CASE("linear backward: input and weight gradients match central finite differences",
          "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t in : sizes) {
        const std::size_t out = 1 + rng() % 12, rows = 1 + rng() % 4;
        INFO("rows " << rows << " in " << in << " out " << out);
        const auto x = uniform<double>(rng, rows * in, -1, 1),
                   w = uniform<double>(rng, out * in, -1, 1);
        const auto bias = uniform<double>(rng, out, -1, 1),
                   g = uniform<double>(rng, rows * out, -1, 1);
        auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww) {
            std::vector<double> y(rows * out);
            k::linear(xx.data(), rows, in, ww.data(), out, bias.data(), y.data());
            double s = 0;
            for (std::size_t i = 0; i < y.size(); ++i)
                s += g[i] * y[i];
            return s;
        };
        std::vector<double> dx(rows * in), dw(out * in);
        k::linear_backward_input(g.data(), rows, out, w.data(), in, dx.data());
        k::linear_backward_weight(x.data(), rows, in, g.data(), out, dw.data());
        CHECK(
            rel_err(dx, finite_difference([&](const std::vector<double>& v) { return loss(v, w); },
                                          x)) <= fd_tol);
        CHECK(
            rel_err(dw, finite_difference([&](const std::vector<double>& v) { return loss(x, v); },
                                          w)) <= fd_tol);
    }
}

namespace {

// y after linear(...) against a reference accumulated in double (long double is slower and the
// float tolerance leaves room for double's error many times over). Checks every element, the
// padding of y past `out` (untouched), and that x was not modified.
struct linear_case {
    std::size_t rows, in, out, ldx, ldy;
    bool bias, accumulate;
};

// Runs one case through `product` (which calls some overload of linear) and returns the number
// of mismatching elements (reported through INFO/CHECK by the caller).
template <class Product>
std::size_t check_linear_case(std::mt19937& rng, const linear_case& c, Product&& product) {
    const auto x = uniform<float>(rng, c.rows * c.ldx, -1, 1);
    const auto w = uniform<float>(rng, c.out * c.in, -1, 1);
    const auto bias = uniform<float>(rng, c.out, -1, 1);
    const auto y0 = uniform<float>(rng, c.rows * c.ldy, -1, 1);
    auto xc = x;
    auto y = y0;
    product(xc.data(), w.data(), c.bias ? bias.data() : nullptr, y.data());
    std::size_t bad = 0;
    std::vector<double> ref(c.out);
    for (std::size_t r = 0; r < c.rows; ++r) {
        const float* xr = x.data() + r * c.ldx;
        for (std::size_t o = 0; o < c.out; ++o) {
            double e = c.accumulate ? double(y0[r * c.ldy + o]) : 0.0;
            const float* wo = w.data() + o * c.in;
            for (std::size_t i = 0; i < c.in; ++i)
                e += double(xr[i]) * double(wo[i]);
            if (c.bias) e += bias[o];
            if (!(std::abs(double(y[r * c.ldy + o]) - e) <= double(product_tol<float>(c.in))))
                ++bad;
        }
        for (std::size_t o = c.out; o < c.ldy; ++o)
            if (y[r * c.ldy + o] != y0[r * c.ldy + o]) ++bad;
    }
    if (std::memcmp(x.data(), xc.data(), x.size() * sizeof(float)) != 0) ++bad;
    return bad;
}

// Rows: every count up to two register tiles plus one, and around the 64 and 128 row blocks.
const std::size_t awkward_rows[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                    12, 13, 14, 15, 16, 17, 63, 64, 65, 257};
// (in, out): K below, at and past one 16-lane vector and the 256 K block; N around the 48-column
// panel and its 16-lane registers.
const std::size_t awkward_in_out[][2] = {{1, 1},    {5, 7},    {16, 48},   {17, 47}, {33, 49},
                                         {100, 97}, {256, 96}, {300, 130}, {513, 50}};

} // namespace

TEST_CASE("linear (float fast path): matches a double reference at awkward shapes, strides, bias "
          "and accumulate",
          "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed() << ", fast float kernel: " << k::detail::has_fast_sgemm);
    for (std::size_t rows : awkward_rows) {
        for (const auto& io : awkward_in_out) {
            const std::size_t in = io[0], out = io[1];
            for (int mode = 0; mode < 3; ++mode) {
                // mode 0: dense, no bias; 1: bias and row strides; 2: also accumulate.
                const std::size_t ldx = mode ? in + 1 + rng() % 17 : in,
                                  ldy = mode ? out + 1 + rng() % 5 : out;
                const linear_case c{rows, in, out, ldx, ldy, mode >= 1, mode == 2};
                INFO("rows " << rows << " in " << in << " out " << out << " ldx " << ldx << " ldy "
                             << ldy << " bias " << c.bias << " accumulate " << c.accumulate);
                // The unpacked overload, with the default strides when dense (0 means dense).
                CHECK(check_linear_case(
                          rng, c, [&](const float* x, const float* w, const float* b, float* y) {
                              k::linear(x, rows, in, w, out, b, y, c.accumulate, mode ? ldx : 0,
                                        mode ? ldy : 0);
                          }) == 0);
                // Pre-packed weights.
                CHECK(check_linear_case(
                          rng, c, [&](const float* x, const float* w, const float* b, float* y) {
                              const k::packed_weight<float> pw(w, out, in);
                              k::linear(x, rows, pw, b, y, c.accumulate, ldx, ldy);
                          }) == 0);
            }
        }
    }
}

TEST_CASE("linear (float fast path): large products take the threaded paths and stay exact",
          "[kernels]") {
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    // One row against wide weights (the matrix-vector paths, split over threads above 2^18
    // weights), a few rows (the dot-product path) and many rows (row and column blocks).
    const linear_case cases[] = {
        {1, 600, 500, 600, 500, true, false},  {1, 777, 1001, 780, 1003, true, true},
        {3, 600, 451, 600, 451, false, false}, {4, 257, 1100, 260, 1100, true, false},
        {130, 520, 200, 520, 203, true, true}, {300, 64, 1000, 64, 1000, true, false}};
    for (const linear_case& c : cases) {
        INFO("rows " << c.rows << " in " << c.in << " out " << c.out);
        CHECK(check_linear_case(
                  rng, c, [&](const float* x, const float* w, const float* b, float* y) {
                      k::linear(x, c.rows, c.in, w, c.out, b, y, c.accumulate, c.ldx, c.ldy);
                  }) == 0);
        CHECK(check_linear_case(rng, c,
                                [&](const float* x, const float* w, const float* b, float* y) {
                                    k::linear(x, c.rows, k::packed_weight<float>(w, c.out, c.in), b,
                                              y, c.accumulate, c.ldx, c.ldy);
                                }) == 0);
    }
}

TEST_CASE("linear (float fast path): the result does not depend on the number of threads",
          "[kernels]") {
    // Threads split the output columns (and row blocks), never K, so every element is summed in
    // the same order: one thread and the whole team must agree bit for bit.
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t rows : {std::size_t(1), std::size_t(3), std::size_t(70), std::size_t(200)}) {
        const std::size_t in = 300, out = 1000;
        const auto x = uniform<float>(rng, rows * in, -1, 1),
                   w = uniform<float>(rng, out * in, -1, 1);
        const k::packed_weight<float> pw(w.data(), out, in);
        std::vector<float> team(rows * out), team_packed(rows * out), one(rows * out),
            one_packed(rows * out);
        k::linear(x.data(), rows, in, w.data(), out, static_cast<const float*>(nullptr),
                  team.data());
        k::linear(x.data(), rows, pw, static_cast<const float*>(nullptr), team_packed.data());
        // Inside a parallel region the kernels run on the calling thread alone.
#if defined(_OPENMP)
#pragma omp parallel num_threads(2)
#endif
        {
#if defined(_OPENMP)
#pragma omp master
#endif
            {
                k::linear(x.data(), rows, in, w.data(), out, static_cast<const float*>(nullptr),
                          one.data());
                k::linear(x.data(), rows, pw, static_cast<const float*>(nullptr),
                          one_packed.data());
            }
        }
        INFO("rows " << rows);
        CHECK(team == one);
        CHECK(team_packed == one_packed);
        // From 5 rows both overloads run the same tile kernel (fewer rows: dot products for
        // unpacked weights, the matrix-vector or tile kernel for packed ones, which sum in other
        // orders).
        if (k::detail::has_fast_sgemm && rows > 4) CHECK(team == team_packed);
    }
}

TEMPLATE_TEST_CASE("packed_weight: packs float (in every build), refers to the weights for double",
                   "[kernels]", float, double) {
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    const std::size_t out = 50, in = 20;
    const auto w = uniform<T>(rng, out * in, -1, 1);
    const k::packed_weight<T> pw(w.data(), out, in);
    CHECK(pw.out() == out);
    CHECK(pw.in() == in);
    CHECK(pw.source() == w.data());
    CHECK_FALSE(pw.empty());
    CHECK(k::packed_weight<T>().empty());
    const bool fast = k::detail::has_fast_sgemm && std::is_same_v<T, float>;
    CHECK(pw.is_packed() == fast);
    // Two panels of 48 columns, zero-padded, times K.
    CHECK(k::packed_weight<T>::packed_size(out, in) == (fast ? 96 * in : 0));
    if (fast) {
        // Panel layout: element (o, i) at panel(o / 48)[i * 48 + o % 48]; the padding is zero.
        for (std::size_t o = 0; o < 96; ++o)
            for (std::size_t i = 0; i < in; ++i)
                CHECK(pw.panel(o / 48)[i * 48 + o % 48] == (o < out ? w[o * in + i] : T(0)));
        // Copies share the buffer; the shared-storage constructor packs the same layout.
        const k::packed_weight<T> copy = pw;
        CHECK(copy.panel(0) == pw.panel(0));
        std::shared_ptr<T> storage =
            k::allocate_packed_storage<T>(k::packed_weight<T>::packed_size(out, in) + 96 * 4);
        const k::packed_weight<T> shared(w.data(), out, in, storage.get() + 96 * 4, storage);
        CHECK(std::equal(pw.panel(0), pw.panel(0) + 96 * in, shared.panel(0)));
    }
    // Either way the packed overload computes the product.
    const std::size_t rows = 3;
    const auto x = uniform<T>(rng, rows * in, -1, 1);
    std::vector<T> a(rows * out), b(rows * out);
    k::linear(x.data(), rows, pw, static_cast<const T*>(nullptr), a.data());
    k::linear(x.data(), rows, in, w.data(), out, static_cast<const T*>(nullptr), b.data());
    for (std::size_t i = 0; i < a.size(); ++i)
        CHECK(std::abs(a[i] - b[i]) <= product_tol<T>(in));
}

TEST_CASE("packed_weight: f16 and bf16 weights pack into panels of their own type", "[kernels]") {
    namespace a = actlens;
    using packed = k::packed_weight<float>;
    CHECK(packed::packs(a::dtype::f32));
    CHECK(packed::packs(a::dtype::f16));
    CHECK(packed::packs(a::dtype::bf16));
    CHECK_FALSE(packed::packs(a::dtype::f64));
    CHECK_FALSE(packed::packs(a::dtype::i8));
    CHECK_FALSE(k::packed_weight<double>::packs(a::dtype::f16));
    const std::size_t out = 50, in = 300; // two panels, two K blocks (256 + 44)
    CHECK(packed::packed_bytes(out, in, a::dtype::f16) == 96 * in * 2);
    CHECK(packed::packed_bytes(out, in, a::dtype::bf16) == 96 * in * 2);
    CHECK(packed::packed_bytes(out, in, a::dtype::f32) == 96 * in * 4);
    CHECK(packed::packed_bytes(out, in, a::dtype::i8) == 0);
    // Distinct bit patterns, read from an odd address (a GGUF's tensors need not be aligned).
    std::vector<unsigned char> bytes(out * in * 2 + 1);
    for (std::size_t e = 0; e < out * in; ++e) {
        const auto v = std::uint16_t(e * 7 + 1);
        std::memcpy(bytes.data() + 1 + 2 * e, &v, 2);
    }
    for (a::dtype type : {a::dtype::f16, a::dtype::bf16}) {
        auto storage = k::allocate_packed_storage<unsigned char>(packed::packed_bytes(out, in, type));
        const packed pw(bytes.data() + 1, type, out, in, storage.get(), storage);
        CHECK(pw.is_packed());
        CHECK(pw.element_type() == type);
        CHECK(pw.panels() == storage.get());
        CHECK(pw.source() == nullptr);
        // Element (o, i) at panel o / 48, [i * 48 + o % 48]; the padding is zero.
        const auto* panels = static_cast<const std::uint16_t*>(pw.panels());
        bool layout = true;
        for (std::size_t o = 0; o < 96; ++o)
            for (std::size_t i = 0; i < in; ++i)
                layout &= panels[(o / 48) * in * 48 + i * 48 + o % 48] ==
                          (o < out ? std::uint16_t((o * in + i) * 7 + 1) : std::uint16_t(0));
        CHECK(layout);
    }
    // f32 through the typed constructor: the same panels as the float one, and the source kept.
    std::mt19937 rng(Catch::rngSeed());
    const auto w = uniform<float>(rng, out * in, -1, 1);
    auto storage = k::allocate_packed_storage<float>(packed::packed_size(out, in));
    const packed typed(w.data(), a::dtype::f32, out, in, storage.get(), storage), plain(w.data(), out, in);
    CHECK(typed.source() == w.data());
    CHECK(std::equal(plain.panel(0), plain.panel(0) + 96 * in, typed.panel(0)));
}

TEMPLATE_TEST_CASE("linear: empty products", "[kernels]", float, double) {
    using T = TestType;
    const std::vector<T> bias{T(1), T(2), T(3)};
    std::vector<T> y{T(10), T(20), T(30), T(40), T(50), T(60)};
    const T* none = nullptr;
    // No inputs: y = bias, or y += bias when accumulating.
    k::linear(none, 2, 0, none, 3, bias.data(), y.data());
    CHECK(y == std::vector<T>{T(1), T(2), T(3), T(1), T(2), T(3)});
    k::linear(none, 2, 0, none, 3, bias.data(), y.data(), true);
    CHECK(y == std::vector<T>{T(2), T(4), T(6), T(2), T(4), T(6)});
    k::linear(none, 2, 0, none, 3, none, y.data());
    CHECK(y == std::vector<T>(6, T(0)));
    // No rows or no outputs: nothing is touched.
    std::vector<T> z{T(7)};
    k::linear(none, 0, 4, none, 3, bias.data(), z.data());
    k::linear(none, 2, 4, none, 0, none, z.data());
    CHECK(z[0] == T(7));
}

TEMPLATE_TEST_CASE("linear_group: equals one linear call per product", "[kernels]", float, double) {
    // Grouping changes how the work is cut into items, never the order in which an element is
    // summed, so the results are identical. Shapes: the q, k, v of a block (one row and many),
    // products with different inputs, and more products than one job takes (8).
    using T = TestType;
    std::mt19937 rng(Catch::rngSeed());
    INFO("seed " << Catch::rngSeed());
    for (std::size_t rows : {std::size_t(1), std::size_t(3), std::size_t(70)}) {
        const std::size_t count = 11;
        std::vector<std::vector<T>> xs, ws, bs, ys, expect;
        std::vector<k::packed_weight<T>> pws;
        std::vector<std::size_t> ins, outs;
        for (std::size_t i = 0; i < count; ++i) {
            const std::size_t in = 1 + rng() % 300, out = 1 + rng() % 400;
            ins.push_back(in);
            outs.push_back(out);
            xs.push_back(uniform<T>(rng, rows * in, -1, 1));
            ws.push_back(uniform<T>(rng, out * in, -1, 1));
            bs.push_back(uniform<T>(rng, out, -1, 1));
            ys.push_back(uniform<T>(rng, rows * out, -1, 1));
        }
        for (std::size_t i = 0; i < count; ++i)
            pws.emplace_back(ws[i].data(), outs[i], ins[i]);
        expect = ys;
        std::vector<k::linear_job<T>> jobs;
        for (std::size_t i = 0; i < count; ++i) {
            const bool accumulate = i % 3 == 1;
            const T* bias = i % 2 ? bs[i].data() : nullptr;
            k::linear(xs[i].data(), rows, pws[i], bias, expect[i].data(), accumulate);
            jobs.push_back({xs[i].data(), rows, &pws[i], bias, ys[i].data(), accumulate});
        }
        k::linear_group(jobs.data(), jobs.size());
        INFO("rows " << rows);
        for (std::size_t i = 0; i < count; ++i)
            CHECK(ys[i] == expect[i]);
    }
}
