// actlens/analysis/correlation.hpp: how much two sets of scores agree.
//
// Attribution methods give one score per feature, head or token; comparing two methods (or a
// method with a ground truth from patching) asks whether the scores agree in value (Pearson), in
// order (Spearman, Kendall), or only at the top (top-k agreement), and how sure the answer is
// (a paired bootstrap interval).
//
// Inputs are std::vector<double> or tensor_view<T> of any rank and strides, flattened in
// row-major logical order; the two inputs must have the same number of elements (their shapes may
// differ). All statistics are computed in double.
//
// Errors, one rule for every function here:
//   - bad input throws actlens::error: sizes differ ([actlens.arg.102] shape_mismatch), fewer than
//     two pairs or a bad k / confidence / resample count ([actlens.arg.101] invalid_argument),
//     a NaN or infinite element ([actlens.arg.104] non_finite; the message names the argument and
//     the index);
//   - a correlation that is mathematically undefined because an input is constant is not an
//     error: the result has status constant_a / constant_b / constant_both, defined() false and
//     value NaN. A numerical failure is reported in the result, not thrown: a constant
//     resample inside a bootstrap, or a dead feature, is data, not a programming mistake.
//
// Thread safety: every function is pure; concurrent calls are safe (bootstrap_ci calls the
// statistic from the calling thread only).
#pragma once

#include <actlens/core/rng.hpp>
#include <actlens/core/tensor.hpp>
#include <actlens/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

namespace actlens {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

/// Why a correlation is or is not defined.
enum class correlation_status {
    ok,            ///< value is the correlation
    constant_a,    ///< the first argument is constant: value is NaN
    constant_b,    ///< the second argument is constant: value is NaN
    constant_both, ///< both arguments are constant: value is NaN
};

/// The result of pearson(), spearman() and kendall_tau().
struct correlation_result {
    double value = std::numeric_limits<double>::quiet_NaN(); ///< in [-1, 1], or NaN when undefined
    correlation_status status = correlation_status::ok;
    std::size_t n = 0; ///< number of pairs

    /// True when value is a correlation (neither input is constant).
    bool defined() const noexcept { return status == correlation_status::ok; }
};

/// The result of bootstrap_ci(): a percentile interval around the statistic of the full sample.
struct bootstrap_result {
    double estimate = std::numeric_limits<double>::quiet_NaN(); ///< statistic of the original pairs
    double lower = std::numeric_limits<double>::quiet_NaN();    ///< (1 - confidence)/2 quantile
    double upper = std::numeric_limits<double>::quiet_NaN();    ///< (1 + confidence)/2 quantile
    std::size_t n_resamples = 0;                                ///< resamples drawn
    std::size_t n_undefined =
        0; ///< resamples whose statistic was NaN/inf; left out of the quantiles
    double confidence = 0.95;

    /// True when the estimate is finite and at least one resample gave a finite statistic.
    bool defined() const noexcept { return std::isfinite(estimate) && n_undefined < n_resamples; }
};

/// The elements of a view of any rank and strides, in row-major logical order, as doubles.
template <class T>
std::vector<double> flatten_to_doubles(tensor_view<T> v);

/// Pearson's product-moment correlation of paired values.
/// Centred and rescaled before the sums, so large offsets (1e8 + small) lose no digits.
/// Errors: see the file comment. Complexity O(n).
correlation_result pearson(const std::vector<double>& a, const std::vector<double>& b);
template <class T, class U>
correlation_result pearson(tensor_view<T> a, tensor_view<U> b);

/// Spearman's rank correlation: Pearson of the ranks, tied values sharing their average rank.
/// Errors: see the file comment. Complexity O(n log n).
correlation_result spearman(const std::vector<double>& a, const std::vector<double>& b);
template <class T, class U>
correlation_result spearman(tensor_view<T> a, tensor_view<U> b);

/// Kendall's tau-b, (nc - nd) / sqrt((n0 - n1)(n0 - n2)) with n1, n2 the pairs tied in a, in b;
/// equals tau-a without ties. Knight's algorithm (sort by (a, b), count the swaps of a merge sort
/// by b): O(n log n) time, O(n) memory. Errors: see the file comment.
correlation_result kendall_tau(const std::vector<double>& a, const std::vector<double>& b);
template <class T, class U>
correlation_result kendall_tau(tensor_view<T> a, tensor_view<U> b);

/// Indices of the k largest values (by |value| when by_magnitude), largest first; equal keys are
/// ordered by lower index, so the result is deterministic. k may be 0; k > size throws
/// invalid_argument; NaN/inf throws non_finite. Complexity O(n log k).
std::vector<std::size_t> top_k_indices(const std::vector<double>& a, std::size_t k,
                                       bool by_magnitude = true);
template <class T>
std::vector<std::size_t> top_k_indices(tensor_view<T> a, std::size_t k, bool by_magnitude = true);

/// Fraction in [0, 1] of top_k_indices(a, k) that are also in top_k_indices(b, k) (same
/// by_magnitude for both). Sizes must match; 1 <= k <= size. Complexity O(n log k).
double top_k_agreement(const std::vector<double>& a, const std::vector<double>& b, std::size_t k,
                       bool by_magnitude = true);
template <class T, class U>
double top_k_agreement(tensor_view<T> a, tensor_view<U> b, std::size_t k, bool by_magnitude = true);

/// Paired percentile bootstrap of statistic(a, b).
///
/// | parameter   | meaning                                                                        |
/// |-------------|--------------------------------------------------------------------------------|
/// | a, b        | paired samples, equal sizes >= 2, finite                                       |
/// | statistic   | callable (const std::vector<double>&, const std::vector<double>&) returning    |
/// |             | double or correlation_result (an undefined result counts as NaN)               |
/// | n_resamples | >= 1; each draws size() pair indices uniformly with replacement                |
/// | confidence  | in (0, 1); the interval is the [(1-c)/2, (1+c)/2] quantiles of the resampled   |
/// |             | statistics, linearly interpolated (NumPy's default quantile)                   |
/// | seed        | seeds an actlens::rng; the same seed gives the same interval on every platform |
///
/// Resamples whose statistic is not finite (e.g. a constant resample) are counted in n_undefined
/// and left out. There is deliberately no default seed. Complexity O(n_resamples * (n + cost of
/// statistic)); memory O(n + n_resamples).
template <class Statistic>
bootstrap_result bootstrap_ci(const std::vector<double>& a, const std::vector<double>& b,
                              Statistic&& statistic, std::size_t n_resamples, double confidence,
                              std::uint64_t seed);
template <class T, class U, class Statistic>
bootstrap_result bootstrap_ci(tensor_view<T> a, tensor_view<U> b, Statistic&& statistic,
                              std::size_t n_resamples, double confidence, std::uint64_t seed);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

inline void check_finite(const std::vector<double>& x, const char* function, const char* name) {
    for (std::size_t i = 0; i < x.size(); ++i)
        if (!std::isfinite(x[i]))
            fail(errc::non_finite, "{}: argument {} has non-finite value {} at index {}", function,
                 name, x[i], i);
}

inline void check_pairs(const std::vector<double>& a, const std::vector<double>& b,
                        const char* function) {
    if (a.size() != b.size())
        fail(errc::shape_mismatch, "{}: arguments a and b have {} and {} elements", function,
             a.size(), b.size());
    if (a.size() < 2)
        fail(errc::invalid_argument, "{}: needs at least 2 pairs, got {}", function, a.size());
    check_finite(a, function, "a");
    check_finite(b, function, "b");
}

inline bool is_constant(const std::vector<double>& x) noexcept {
    return std::all_of(x.begin(), x.end(), [&](double v) { return v == x[0]; });
}

inline correlation_status constant_status(bool a_constant, bool b_constant) noexcept {
    if (a_constant && b_constant) return correlation_status::constant_both;
    if (a_constant) return correlation_status::constant_a;
    if (b_constant) return correlation_status::constant_b;
    return correlation_status::ok;
}

// Deviations from the mean, scaled so that the largest is 1. They are taken on the original scale
// (a value 1e8 + 0.1 keeps its 0.1), with the mean summed as x/n so that it cannot overflow and
// corrected once by the mean of the deviations (the corrected two-pass algorithm). Values that
// span more than DBL_MAX are halved first (exact). The final rescaling keeps squares of tiny
// deviations from underflowing. Requires a non-constant x.
inline std::vector<double> scaled_deviations(const std::vector<double>& x) {
    const double n = double(x.size());
    std::vector<double> d(x.size());
    double factor = 1;
    for (int attempt = 0; attempt < 2; ++attempt, factor = 0.5) {
        double mean = 0;
        for (double v : x)
            mean += factor * v / n;
        bool finite = true;
        for (std::size_t i = 0; i < x.size(); ++i) {
            d[i] = factor * x[i] - mean;
            finite = finite && std::isfinite(d[i]);
        }
        if (finite) break;
    }
    double correction = 0;
    for (double v : d)
        correction += v / n;
    double largest = 0;
    for (double& v : d) {
        v -= correction;
        largest = std::max(largest, std::abs(v));
    }
    for (double& v : d)
        v /= largest;
    return d;
}

// Pearson on validated, non-constant input.
inline double pearson_unchecked(const std::vector<double>& a, const std::vector<double>& b) {
    const std::vector<double> da = scaled_deviations(a), db = scaled_deviations(b);
    double sab = 0, saa = 0, sbb = 0;
    for (std::size_t i = 0; i < da.size(); ++i) {
        sab += da[i] * db[i];
        saa += da[i] * da[i];
        sbb += db[i] * db[i];
    }
    // Rounding can push |r| a few ulp past 1.
    return std::clamp(sab / std::sqrt(saa * sbb), -1.0, 1.0);
}

// 1-based ranks; a run of equal values gets the mean of its positions.
inline std::vector<double> average_ranks(const std::vector<double>& x) {
    std::vector<std::size_t> order(x.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(),
              [&](std::size_t i, std::size_t j) { return x[i] < x[j]; });
    std::vector<double> ranks(x.size());
    for (std::size_t begin = 0; begin < order.size();) {
        std::size_t end = begin + 1;
        while (end < order.size() && x[order[end]] == x[order[begin]])
            ++end;
        // positions begin+1 .. end, mean (begin + 1 + end) / 2
        const double rank = 0.5 * double(begin + 1 + end);
        for (std::size_t i = begin; i < end; ++i)
            ranks[order[i]] = rank;
        begin = end;
    }
    return ranks;
}

// Sum of t(t-1)/2 over runs of equal values in a sorted sequence (accessed through key(i)).
template <class Key>
std::uint64_t tied_pairs(std::size_t n, Key key) {
    std::uint64_t pairs = 0, run = 1;
    for (std::size_t i = 1; i <= n; ++i) {
        if (i < n && key(i) == key(i - 1)) {
            ++run;
        } else {
            pairs += run * (run - 1) / 2;
            run = 1;
        }
    }
    return pairs;
}

// Bottom-up merge sort of `order` by b[order[i]]; returns the number of inversions (pairs with
// b strictly decreasing), which after sorting by (a, b) are exactly the discordant pairs. Equal b
// values are not inversions (the merge takes from the left run on ties).
inline std::uint64_t sort_counting_swaps(std::vector<std::size_t>& order,
                                         const std::vector<double>& b) {
    const std::size_t n = order.size();
    std::vector<std::size_t> buffer(n);
    std::uint64_t swaps = 0;
    for (std::size_t width = 1; width < n; width *= 2) {
        for (std::size_t lo = 0; lo < n; lo += 2 * width) {
            const std::size_t mid = std::min(lo + width, n), hi = std::min(lo + 2 * width, n);
            std::size_t i = lo, j = mid, out = lo;
            while (i < mid && j < hi) {
                if (b[order[j]] < b[order[i]]) {
                    swaps += mid - i; // order[j] passes every remaining element of the left run
                    buffer[out++] = order[j++];
                } else {
                    buffer[out++] = order[i++];
                }
            }
            while (i < mid)
                buffer[out++] = order[i++];
            while (j < hi)
                buffer[out++] = order[j++];
        }
        order.swap(buffer);
    }
    return swaps;
}

inline std::vector<std::size_t> top_k_unchecked(const std::vector<double>& x, std::size_t k,
                                                bool by_magnitude) {
    std::vector<std::size_t> order(x.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    auto key = [&](std::size_t i) { return by_magnitude ? std::abs(x[i]) : x[i]; };
    // A strict total order (key descending, then index ascending): the top k is unique.
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      [&](std::size_t i, std::size_t j) {
                          const double ki = key(i), kj = key(j);
                          return ki > kj || (ki == kj && i < j);
                      });
    order.resize(k);
    return order;
}

// Uniform integer in [0, n), n >= 1, without modulo bias (rejection of the short last block), so
// that a seed gives the same resamples on every platform.
inline std::size_t uniform_index(rng& gen, std::size_t n) noexcept {
    const std::uint64_t range = std::uint64_t(n);
    const std::uint64_t threshold = (0 - range) % range; // 2^64 mod range
    for (;;) {
        const std::uint64_t x = gen.next();
        if (x >= threshold) return std::size_t(x % range);
    }
}

// Linear interpolation between order statistics, NumPy's default ("linear", type 7).
inline double sorted_quantile(const std::vector<double>& sorted, double q) noexcept {
    const double position = q * double(sorted.size() - 1);
    const std::size_t below = std::size_t(std::floor(position));
    const std::size_t above = std::min(below + 1, sorted.size() - 1);
    const double fraction = position - double(below);
    return sorted[below] + fraction * (sorted[above] - sorted[below]);
}

template <class R>
double statistic_value(const R& r) {
    if constexpr (std::is_same_v<std::decay_t<R>, correlation_result>) {
        return r.value; // NaN when undefined
    } else {
        static_assert(std::is_convertible_v<R, double>,
                      "bootstrap_ci: the statistic must return double (or something convertible "
                      "to double) or actlens::correlation_result");
        return static_cast<double>(r);
    }
}

} // namespace detail

template <class T>
std::vector<double> flatten_to_doubles(tensor_view<T> v) {
    static_assert(
        std::is_arithmetic_v<std::remove_const_t<T>>,
        "flatten_to_doubles: the view must hold an arithmetic type (float, double, int...)");
    std::vector<double> out;
    if (v.rank() == 0) return out;
    out.reserve(v.size());
    if (v.size() == 0) return out;
    if (v.data() == nullptr)
        fail(errc::invalid_argument, "flatten_to_doubles: view of shape {} has no data",
             v.shape().to_string());
    // Unused trailing extents are 1, so four loops cover every rank in row-major order.
    const shape_t& s = v.shape();
    for (std::size_t i = 0; i < s[0]; ++i)
        for (std::size_t j = 0; j < s[1]; ++j)
            for (std::size_t k = 0; k < s[2]; ++k)
                for (std::size_t l = 0; l < s[3]; ++l)
                    out.push_back(double(v(i, j, k, l)));
    return out;
}

inline correlation_result pearson(const std::vector<double>& a, const std::vector<double>& b) {
    detail::check_pairs(a, b, "pearson");
    correlation_result r;
    r.n = a.size();
    r.status = detail::constant_status(detail::is_constant(a), detail::is_constant(b));
    if (r.defined()) r.value = detail::pearson_unchecked(a, b);
    return r;
}

inline correlation_result spearman(const std::vector<double>& a, const std::vector<double>& b) {
    detail::check_pairs(a, b, "spearman");
    correlation_result r;
    r.n = a.size();
    r.status = detail::constant_status(detail::is_constant(a), detail::is_constant(b));
    if (r.defined())
        r.value = detail::pearson_unchecked(detail::average_ranks(a), detail::average_ranks(b));
    return r;
}

inline correlation_result kendall_tau(const std::vector<double>& a, const std::vector<double>& b) {
    detail::check_pairs(a, b, "kendall_tau");
    const std::size_t n = a.size();
    correlation_result r;
    r.n = n;

    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) {
        return a[i] < a[j] || (a[i] == a[j] && b[i] < b[j]);
    });
    const std::uint64_t n0 = std::uint64_t(n) * (n - 1) / 2;
    const std::uint64_t tied_a = detail::tied_pairs(n, [&](std::size_t i) { return a[order[i]]; });
    // Runs of equal (a, b) are contiguous after the lexicographic sort.
    const std::uint64_t tied_ab = detail::tied_pairs(
        n, [&](std::size_t i) { return std::make_pair(a[order[i]], b[order[i]]); });
    const std::uint64_t discordant = detail::sort_counting_swaps(order, b);
    const std::uint64_t tied_b = detail::tied_pairs(n, [&](std::size_t i) { return b[order[i]]; });

    r.status = detail::constant_status(tied_a == n0, tied_b == n0);
    if (!r.defined()) return r;
    // Every pair is tied in a, tied in b, concordant or discordant; pairs tied in both were
    // subtracted twice.
    const double concordant = double(n0 - tied_a - tied_b + tied_ab - discordant);
    const double numerator = concordant - double(discordant);
    const double denominator = std::sqrt(double(n0 - tied_a)) * std::sqrt(double(n0 - tied_b));
    r.value = std::clamp(numerator / denominator, -1.0, 1.0);
    return r;
}

inline std::vector<std::size_t> top_k_indices(const std::vector<double>& a, std::size_t k,
                                              bool by_magnitude) {
    if (k > a.size())
        fail(errc::invalid_argument, "top_k_indices: k = {} exceeds the {} elements", k, a.size());
    detail::check_finite(a, "top_k_indices", "a");
    return detail::top_k_unchecked(a, k, by_magnitude);
}

inline double top_k_agreement(const std::vector<double>& a, const std::vector<double>& b,
                              std::size_t k, bool by_magnitude) {
    if (a.size() != b.size())
        fail(errc::shape_mismatch, "top_k_agreement: arguments a and b have {} and {} elements",
             a.size(), b.size());
    if (k == 0 || k > a.size())
        fail(errc::invalid_argument, "top_k_agreement: k = {} must be in [1, {}]", k, a.size());
    detail::check_finite(a, "top_k_agreement", "a");
    detail::check_finite(b, "top_k_agreement", "b");
    std::vector<std::size_t> top_a = detail::top_k_unchecked(a, k, by_magnitude);
    std::vector<std::size_t> top_b = detail::top_k_unchecked(b, k, by_magnitude);
    std::sort(top_a.begin(), top_a.end());
    std::sort(top_b.begin(), top_b.end());
    std::vector<std::size_t> common;
    std::set_intersection(top_a.begin(), top_a.end(), top_b.begin(), top_b.end(),
                          std::back_inserter(common));
    return double(common.size()) / double(k);
}

template <class Statistic>
bootstrap_result bootstrap_ci(const std::vector<double>& a, const std::vector<double>& b,
                              Statistic&& statistic, std::size_t n_resamples, double confidence,
                              std::uint64_t seed) {
    detail::check_pairs(a, b, "bootstrap_ci");
    if (n_resamples == 0)
        fail(errc::invalid_argument, "bootstrap_ci: n_resamples must be at least 1, got 0");
    if (!(confidence > 0 && confidence < 1))
        fail(errc::invalid_argument, "bootstrap_ci: confidence must be in (0, 1), got {}",
             confidence);

    bootstrap_result result;
    result.n_resamples = n_resamples;
    result.confidence = confidence;
    result.estimate = detail::statistic_value(std::invoke(statistic, a, b));

    const std::size_t n = a.size();
    rng gen(seed);
    std::vector<double> ra(n), rb(n), values;
    values.reserve(n_resamples);
    for (std::size_t r = 0; r < n_resamples; ++r) {
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t j = detail::uniform_index(gen, n);
            ra[i] = a[j];
            rb[i] = b[j];
        }
        const double v =
            detail::statistic_value(std::invoke(statistic, std::as_const(ra), std::as_const(rb)));
        if (std::isfinite(v))
            values.push_back(v);
        else
            ++result.n_undefined;
    }
    if (values.empty()) return result;
    std::sort(values.begin(), values.end());
    const double tail = 0.5 * (1 - confidence);
    result.lower = detail::sorted_quantile(values, tail);
    result.upper = detail::sorted_quantile(values, 1 - tail);
    return result;
}

template <class T, class U>
correlation_result pearson(tensor_view<T> a, tensor_view<U> b) {
    return pearson(flatten_to_doubles(a), flatten_to_doubles(b));
}

template <class T, class U>
correlation_result spearman(tensor_view<T> a, tensor_view<U> b) {
    return spearman(flatten_to_doubles(a), flatten_to_doubles(b));
}

template <class T, class U>
correlation_result kendall_tau(tensor_view<T> a, tensor_view<U> b) {
    return kendall_tau(flatten_to_doubles(a), flatten_to_doubles(b));
}

template <class T>
std::vector<std::size_t> top_k_indices(tensor_view<T> a, std::size_t k, bool by_magnitude) {
    return top_k_indices(flatten_to_doubles(a), k, by_magnitude);
}

template <class T, class U>
double top_k_agreement(tensor_view<T> a, tensor_view<U> b, std::size_t k, bool by_magnitude) {
    return top_k_agreement(flatten_to_doubles(a), flatten_to_doubles(b), k, by_magnitude);
}

template <class T, class U, class Statistic>
bootstrap_result bootstrap_ci(tensor_view<T> a, tensor_view<U> b, Statistic&& statistic,
                              std::size_t n_resamples, double confidence, std::uint64_t seed) {
    return bootstrap_ci(flatten_to_doubles(a), flatten_to_doubles(b),
                        std::forward<Statistic>(statistic), n_resamples, confidence, seed);
}

} // namespace actlens
