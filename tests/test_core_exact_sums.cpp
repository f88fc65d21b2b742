#include "test_helpers.hpp"

#include <actlens/core/exact_sums.hpp>
#include <actlens/core/rng.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

using namespace actlens;

namespace {
bool same_double_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
} // namespace

TEST_CASE("exact_sums: integers times a power of two sum exactly, in any order", "[exact_sums]") {
    // Terms k · 2^-20 with |k| < 2^40: their exact sum is an int64 sum of the k, known independently.
    rng gen(3);
    std::vector<std::int64_t> ks;
    for (int i = 0; i < 4000; ++i) {
        const auto k = static_cast<std::int64_t>((gen.uniform() - 0.5) * 0x1.0p41);
        ks.push_back(k);
    }
    std::int64_t exact = 0;
    for (std::int64_t k : ks) exact += k;
    exact_sums forward(1), backward(1), pairs(1), halves(1), other_half(1);
    for (std::size_t i = 0; i < ks.size(); ++i) forward.add(0, std::ldexp(double(ks[i]), -20));
    for (std::size_t i = ks.size(); i-- > 0;) backward.add(0, std::ldexp(double(ks[i]), -20));
    for (std::size_t i = 0; i < ks.size(); i += 2) pairs.add(0, std::ldexp(double(ks[i]) + double(ks[i + 1]), -20));
    for (std::size_t i = 0; i < ks.size(); ++i) (i % 3 ? halves : other_half).add(0, std::ldexp(double(ks[i]), -20));
    halves.add(other_half);
    const double expected = std::ldexp(double(exact), -20); // |exact| < 2^53: exact in a double
    CHECK(same_double_bits(forward.value(0), expected));
    CHECK(same_double_bits(backward.value(0), expected));
    CHECK(same_double_bits(pairs.value(0), expected));
    CHECK(same_double_bits(halves.value(0), expected));
}

TEST_CASE("exact_sums: where naive double sums depend on the order, exact ones do not", "[exact_sums]") {
    std::vector<double> terms;
    rng gen(5);
    for (int i = 0; i < 2000; ++i) terms.push_back(std::ldexp(gen.normal(), int(gen.uniform() * 60) - 30));
    std::vector<double> shuffled = terms;
    std::reverse(shuffled.begin(), shuffled.end());
    std::rotate(shuffled.begin(), shuffled.begin() + 777, shuffled.end());
    double naive_a = 0.0, naive_b = 0.0;
    exact_sums a(1), b(1);
    for (double t : terms) naive_a += t, a.add(0, t);
    for (double t : shuffled) naive_b += t, b.add(0, t);
    CHECK_FALSE(same_double_bits(naive_a, naive_b)); // the premise: float addition is not associative
    CHECK(same_double_bits(a.value(0), b.value(0)));
    // And the exact sum is the correctly rounded one, up to the final conversion: compare with long double.
    long double wide = 0.0L;
    for (double t : terms) wide += t;
    CHECK(std::fabs(a.value(0) - double(wide)) <= 1e-12 * std::fabs(double(wide)) + 1e-15);
}

TEST_CASE("exact_sums: cancellation, sign, many adds and the rounding grid", "[exact_sums]") {
    exact_sums s(3);
    s.add(0, -2.5);
    s.add(0, 0.75);
    CHECK(s.value(0) == -1.75);
    s.add(1, 1e16);
    s.add(1, 1.0);
    s.add(1, -1e16);
    CHECK(s.value(1) == 1.0); // naive double: 0
    // Past the carry headroom (2^29 adds between normalisations is internal): 3 * 10^6 adds of 0.1.
    for (int i = 0; i < 3000000; ++i) s.add(2, -0.1);
    CHECK(std::fabs(s.value(2) + 300000.0) < 1e-6);
    // Terms below the 2^-64 grid round to it: 2^-66 rounds to 0, 2^-65 (half) away from zero.
    exact_sums tiny(2);
    for (int i = 0; i < 16; ++i) tiny.add(0, std::ldexp(1.0, -66));
    CHECK(tiny.value(0) == 0.0);
    tiny.add(1, std::ldexp(1.0, -65));
    CHECK(tiny.value(1) == std::ldexp(1.0, -64));
}

TEST_CASE("exact_sums: NaN, infinity and out-of-range terms and sums are errors", "[exact_sums][errors]") {
    exact_sums s(1);
    require_error([&] { s.add(0, std::numeric_limits<double>::quiet_NaN()); }, errc::non_finite, "sum 0");
    require_error([&] { s.add(0, std::numeric_limits<double>::infinity()); }, errc::non_finite);
    require_error([&] { s.add(0, std::ldexp(1.0, 62)); }, errc::out_of_range, "2^62");
    for (int i = 0; i < 4; ++i) s.add(0, std::ldexp(1.0, 61));
    require_error([&] { s.value(0); }, errc::out_of_range, "2^63");
    exact_sums two(2);
    require_error([&] { two.add(s); }, errc::shape_mismatch);
}
