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
} // namespace detail

/// GELU, tanh form (GPT-2's "gelu_new"): 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))).
template <class T>
void gelu_tanh(const T* in, T* out, std::size_t n) noexcept {
    using std::tanh;
    using xsimd::tanh;
    detail::simd_transform(in, out, n, [](auto u) {
        const auto inner = detail::sqrt_2_over_pi<T> * (u + detail::gelu_cubic<T> * u * u * u);
        return T(0.5) * u * (T(1) + tanh(inner));
    });
}

/// SiLU: u * sigmoid(u).
template <class T>
void silu(const T* in, T* out, std::size_t n) noexcept {
    using std::exp;
    using xsimd::exp;
    detail::simd_transform(in, out, n, [](auto u) { return u / (T(1) + exp(-u)); });
}

/// SwiGLU product: out = silu(gate) * up (Llama's MLP hidden vector).
template <class T>
void swiglu(const T* gate, const T* up, T* out, std::size_t n) noexcept {
    using std::exp;
    using xsimd::exp;
    detail::simd_transform2(gate, up, out, n, [](auto g, auto u) { return g / (T(1) + exp(-g)) * u; });
}

} // namespace actlens::kernels
