// actlens/kernels/activations.hpp: elementwise MLP activations (vectorised transcendental functions:
// a scalar std::tanh costs ~20 ns per element, a third of a naive GPT-2 block).
#pragma once

#include <actlens/kernels/detail/simd.hpp>

#include <cmath>
#include <cstddef>

namespace actlens::kernels {

namespace detail {
template <class T>
inline constexpr T sqrt_2_over_pi = T(0.79788456080286535587989211986876);
template <class T>
inline constexpr T gelu_cubic = T(0.044715);
template <class T>
inline constexpr T one_over_sqrt_2 = T(0.70710678118654752440084436210485);
template <class T>
inline constexpr T one_over_sqrt_2pi = T(0.39894228040143267793994605993438);
} // namespace detail

namespace detail {
/// GELU's tanh form of one value or one SIMD batch of values of type T.
template <class T, class V>
V gelu_tanh_of(const V& u) noexcept {
    const V inner = sqrt_2_over_pi<T> * (u + gelu_cubic<T> * u * u * u);
    return T(0.5) * u * (T(1) + detail::tanh(inner));
}
} // namespace detail

/// GELU, tanh form (GPT-2's "gelu_new"): 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))).
template <class T>
void gelu_tanh(const T* in, T* out, std::size_t n) noexcept {
    detail::simd_transform(in, out, n, [](auto u) { return detail::gelu_tanh_of<T>(u); });
}

/// GELU, exact form (GPT-NeoX's and BERT's "gelu"): 0.5 u (1 + erf(u / sqrt 2)).
template <class T>
void gelu_erf(const T* in, T* out, std::size_t n) noexcept {
    detail::simd_transform(in, out, n,
                           [](auto u) { return T(0.5) * u * (T(1) + detail::erf(u * detail::one_over_sqrt_2<T>)); });
}

/// SiLU: u * sigmoid(u).
template <class T>
void silu(const T* in, T* out, std::size_t n) noexcept {
    detail::simd_transform(in, out, n, [](auto u) { return u / (T(1) + detail::exp(-u)); });
}

/// SwiGLU product: out = silu(gate) * up (Llama's MLP hidden vector).
template <class T>
void swiglu(const T* gate, const T* up, T* out, std::size_t n) noexcept {
    detail::simd_transform2(gate, up, out, n, [](auto g, auto u) { return g / (T(1) + detail::exp(-g)) * u; });
}

/// GeGLU product with GELU's tanh form: out = gelu_tanh(gate) * up (Gemma's MLP hidden vector;
/// Shazeer 2020, "GLU Variants Improve Transformer", eq. 5).
template <class T>
void geglu(const T* gate, const T* up, T* out, std::size_t n) noexcept {
    detail::simd_transform2(gate, up, out, n, [](auto g, auto u) { return detail::gelu_tanh_of<T>(g) * u; });
}

/// Soft capping in place: x = cap * tanh(x / cap), which bounds |x| below cap and is the identity
/// near 0 (Gemma 2's attention-logit and final-logit capping; Gemma Team 2024, section 2).
template <class T>
void soft_cap(T* x, std::size_t n, T cap) noexcept {
    const T inv = T(1) / cap;
    detail::simd_transform(x, x, n, [cap, inv](auto v) { return cap * detail::tanh(v * inv); });
}

// ---------------------------------------------------------------------------------------------
// Backward passes: the input gradient given the output gradient, element by element, vectorised
// like the forward. They overwrite their outputs; an output may alias an input (each element is
// read before it is written).
// ---------------------------------------------------------------------------------------------

/// Gradient of `gelu_tanh`: du = dy * gelu'(u) with t = tanh(k (u + c u^3)), k = sqrt(2/pi),
/// c = 0.044715 and gelu'(u) = 0.5 (1 + t) + 0.5 u (1 - t^2) k (1 + 3 c u^2).
template <class T>
void gelu_tanh_backward(const T* u, const T* dy, T* du, std::size_t n) noexcept {
    detail::simd_transform2(u, dy, du, n, [](auto x, auto g) {
        const auto x2 = x * x;
        const auto t = detail::tanh(detail::sqrt_2_over_pi<T> * (x + detail::gelu_cubic<T> * x2 * x));
        const auto dinner = detail::sqrt_2_over_pi<T> * (T(1) + T(3) * detail::gelu_cubic<T> * x2);
        return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner);
    });
}

/// Gradient of `gelu_erf`: du = dy * (Phi(u) + u phi(u)), Phi the standard normal CDF, phi its density.
template <class T>
void gelu_erf_backward(const T* u, const T* dy, T* du, std::size_t n) noexcept {
    detail::simd_transform2(u, dy, du, n, [](auto x, auto g) {
        const auto cdf = T(0.5) * (T(1) + detail::erf(x * detail::one_over_sqrt_2<T>));
        return g * (cdf + x * detail::one_over_sqrt_2pi<T> * detail::exp(T(-0.5) * x * x));
    });
}

/// Gradient of `silu`: du = dy * s (1 + u (1 - s)) with s = sigmoid(u).
template <class T>
void silu_backward(const T* u, const T* dy, T* du, std::size_t n) noexcept {
    detail::simd_transform2(u, dy, du, n, [](auto x, auto g) {
        const auto s = T(1) / (T(1) + detail::exp(-x));
        return g * s * (T(1) + x * (T(1) - s));
    });
}

/// Gradients of `swiglu` (out = silu(gate) * up) given dy = dL/dout:
/// dgate = dy * up * silu'(gate) and dup = dy * silu(gate), in one vectorised sweep.
/// dgate and dup may alias gate, up or dy (element for element), not each other.
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dy, T* dgate, T* dup,
                     std::size_t n) noexcept {
    // Called with batches and with scalars; returns (dgate, dup) through its last two arguments.
    auto grads = [](auto g, auto u, auto d, auto& dg, auto& du) {
        const auto s = T(1) / (T(1) + detail::exp(-g));
        const auto silu_g = g * s;
        dg = d * u * s * (T(1) + g * (T(1) - s));
        du = d * silu_g;
    };
    std::size_t i = 0;
#if !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
    using batch = xsimd::batch<T>;
    constexpr std::size_t w = batch::size;
    for (const std::size_t body = n - n % w; i < body; i += w) {
        batch dg, du;
        grads(batch::load_unaligned(gate + i), batch::load_unaligned(up + i),
              batch::load_unaligned(dy + i), dg, du);
        dg.store_unaligned(dgate + i);
        du.store_unaligned(dup + i);
    }
#endif
    for (; i < n; ++i) {
        T dg, du;
        grads(gate[i], up[i], dy[i], dg, du);
        dgate[i] = dg;
        dup[i] = du;
    }
}

} // namespace actlens::kernels
