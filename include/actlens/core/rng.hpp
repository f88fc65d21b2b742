// actlens/core/rng.hpp: a small, explicitly seeded random generator with portable results.
//
// The standard distributions (std::uniform_real_distribution, std::normal_distribution) may give
// different numbers on different standard libraries, so sampling and random initialisation use
// their own transforms of xoshiro256** output: a seed gives the same tokens on every platform.
#pragma once

#include <cmath>
#include <cstdint>

namespace actlens {

/// xoshiro256** seeded through splitmix64. Not thread-safe: one generator per thread or request.
class rng {
public:
    explicit rng(std::uint64_t seed = 0) noexcept {
        for (auto& s : m_state) {
            seed += 0x9E3779B97F4A7C15ULL;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            s = z ^ (z >> 31);
        }
    }

    /// 64 uniformly random bits.
    std::uint64_t next() noexcept {
        const std::uint64_t result = rotl(m_state[1] * 5, 7) * 9;
        const std::uint64_t t = m_state[1] << 17;
        m_state[2] ^= m_state[0];
        m_state[3] ^= m_state[1];
        m_state[1] ^= m_state[2];
        m_state[0] ^= m_state[3];
        m_state[2] ^= t;
        m_state[3] = rotl(m_state[3], 45);
        return result;
    }

    /// Uniform in [0, 1) with 53 random bits.
    double uniform() noexcept { return double(next() >> 11) * 0x1.0p-53; }

    /// Standard normal (Box-Muller; one value per call, the partner is discarded for simplicity).
    double normal() noexcept {
        const double u1 = 1.0 - uniform(); // (0, 1]: log is finite
        const double u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925286766559 * u2);
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    std::uint64_t m_state[4];
};

} // namespace actlens
