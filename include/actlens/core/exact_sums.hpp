// actlens/core/exact_sums.hpp: many sums whose results do not depend on the order of their terms.
//
// Floating-point addition is not associative, so a sum split over threads, blocks or MPI ranks
// depends on the split. Here each term is first rounded to a multiple of 2^-64 (only terms with bits
// below 2^-64 change) and then added *exactly*, as a fixed-point integer of four 32-bit digits,
// each held in an int64 with room for carries. Integer addition is associative and commutative, so
// a sum is the same bits whatever the order and grouping of its terms: one process or many, one
// thread or several (the idea of Kulisch's long accumulator, cut to the range these sums need).
//
// Range: |sum| < 2^63 (about 9.2e18); a term or sum beyond is an actlens::error, never a wrap.
// Cost: a few integer operations per term and 32 bytes per sum. Merging two accumulators (threads,
// or MPI_SUM over the int64 digits of every rank: see mpi/communicator.hpp) is also exact.
#pragma once

#include <actlens/error.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace actlens {

class exact_sums {
public:
    static constexpr std::size_t digits = 4;    ///< 32-bit digits per sum
    static constexpr int lowest_exponent = -64; ///< the unit of the lowest digit is 2^-64

    exact_sums() = default;
    /// `count` sums, all zero.
    explicit exact_sums(std::size_t count) : m_digits(count * digits, 0) {}

    std::size_t size() const noexcept { return m_digits.size() / digits; }
    void resize(std::size_t count) {
        m_digits.assign(count * digits, 0);
        m_pending = 0;
    }
    void clear() noexcept {
        for (auto& d : m_digits) d = 0;
        m_pending = 0;
    }

    /// Adds `term` to sum i. Throws actlens::error: arg.104 for a NaN or infinity, arg.103 for a term of
    /// magnitude >= 2^62 (or, later, a sum beyond 2^63).
    void add(std::size_t i, double term) {
        if (term == 0.0) return;
        // |term| = mantissa · 2^exponent with a 53-bit integer mantissa, read from the bits (frexp
        // and ldexp are library calls; this is the hot loop of SNMF's block sums).
        std::uint64_t bits = 0;
        std::memcpy(&bits, &term, sizeof bits);
        const int biased = static_cast<int>((bits >> 52) & 0x7FF);
        if (biased == 0x7FF) fail(errc::non_finite, "exact_sums: term {} of sum {} is not finite", term, i);
        std::uint64_t mantissa = bits & ((std::uint64_t(1) << 52) - 1);
        int exponent = -1074; // subnormal
        if (biased != 0) {
            mantissa |= std::uint64_t(1) << 52;
            exponent = biased - 1075;
        }
        // In units of the grid: |term| = mantissa · 2^shift · 2^-64.
        int shift = exponent - lowest_exponent;
        if (shift < 0) { // bits below 2^-64: round half away from zero, the same for every order
            if (shift < -54) return;
            const int drop = -shift;
            mantissa = (mantissa + (std::uint64_t(1) << (drop - 1))) >> drop;
            shift = 0;
        }
        if (shift + 53 > 62 + 64)
            fail(errc::out_of_range, "exact_sums: term {} of sum {} exceeds the range of 2^62", term, i);
        if (m_pending == headroom) normalize();
        ++m_pending;
        // mantissa · 2^shift split into 32-bit digits: the low and high halves of the mantissa, each
        // shifted into place, touch at most three consecutive digits.
        const std::size_t first = static_cast<std::size_t>(shift / 32);
        const int offset = shift % 32;
        const std::uint64_t low = (mantissa & mask) << offset, high = (mantissa >> 32) << offset;
        const std::int64_t parts[3] = {std::int64_t(low & mask), std::int64_t((low >> 32) + (high & mask)),
                                       std::int64_t(high >> 32)};
        std::int64_t* d = &m_digits[i * digits];
        const bool negative = term < 0.0;
        for (std::size_t k = 0; k < 3 && first + k < digits; ++k) d[first + k] += negative ? -parts[k] : parts[k];
    }

    /// Adds every sum of `other` (same size) to this one's.
    void add(const exact_sums& other) {
        if (other.size() != size())
            fail(errc::shape_mismatch, "exact_sums: adding {} sums to {}", other.size(), size());
        if (other.m_pending > headroom / 2) { // its digits may be large: add a normalized copy
            exact_sums copy = other;
            copy.normalize();
            add(copy);
            return;
        }
        if (m_pending + other.m_pending + 1 > headroom) normalize();
        for (std::size_t k = 0; k < m_digits.size(); ++k) m_digits[k] += other.m_digits[k];
        m_pending += other.m_pending + 1;
    }

    /// Sum i, rounded to double. The same bits for the same exact sum, however it was reached.
    double value(std::size_t i) const {
        std::int64_t d[digits];
        for (std::size_t k = 0; k < digits; ++k) d[k] = m_digits[i * digits + k];
        carry(d, i);
        double v = 0.0;
        for (std::size_t k = digits; k-- > 0;) v += std::ldexp(double(d[k]), int(32 * k) + lowest_exponent);
        return v;
    }

    /// Propagates carries so that every digit but the top one is in [0, 2^32) (the top one carries
    /// the sign). Done automatically before the digits could overflow; call it before exchanging
    /// raw digits (MPI), so that the sum over ranks cannot overflow either.
    void normalize() {
        for (std::size_t i = 0; i < size(); ++i) carry(&m_digits[i * digits], i);
        m_pending = 0;
    }

    /// The raw digits (4 int64 per sum, sum-major), for exchanging between processes: the
    /// element-wise integer sum of normalized digit arrays is the digit array of the summed sums.
    std::int64_t* digit_data() noexcept { return m_digits.data(); }
    std::size_t digit_count() const noexcept { return m_digits.size(); }
    /// Declares that the digits were replaced by sums of `terms` normalized arrays (after an MPI reduce).
    void digits_replaced(std::size_t terms) {
        if (terms > headroom) fail(errc::invalid_argument, "exact_sums: {} merged arrays exceed the headroom", terms);
        m_pending = terms;
        normalize();
    }

private:
    static constexpr std::uint64_t mask = 0xFFFFFFFFu;
    // Each add puts less than 2^32 into a digit; an int64 then has room for 2^31 adds before a
    // carry is due. Normalize well before.
    static constexpr std::size_t headroom = std::size_t(1) << 29;

    static std::int64_t floor_div_2_32(std::int64_t v) noexcept {
        const std::int64_t base = std::int64_t(1) << 32;
        return v >= 0 ? v / base : -((-v + base - 1) / base);
    }

    static void carry(std::int64_t* d, std::size_t i) {
        std::int64_t c = 0;
        for (std::size_t k = 0; k + 1 < digits; ++k) {
            const std::int64_t v = d[k] + c;
            c = floor_div_2_32(v);
            d[k] = v - c * (std::int64_t(1) << 32);
        }
        d[digits - 1] += c;
        const std::int64_t top = d[digits - 1];
        if (top >= (std::int64_t(1) << 31) || top < -(std::int64_t(1) << 31))
            fail(errc::out_of_range, "exact_sums: sum {} exceeds the range of 2^63", i);
    }

    std::vector<std::int64_t> m_digits;
    std::size_t m_pending = 0; // adds since the last normalize (bounds every digit's magnitude)
};

} // namespace actlens
