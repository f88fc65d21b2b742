// actlens/report/color.hpp: colour scales for scores and patterns.
//
// Signed scores (patching effects, attributions) use a diverging scale: white at 0, blue for
// negative and red for positive values, symmetric (-m and +m get the same depth of colour), so the
// eye compares magnitudes across signs. Patterns and activations in [0, max] use a sequential
// white-to-purple scale. Both interpolate linearly in sRGB between the end colours; values outside
// the range are clamped to the end colour, and the legend states the range.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

namespace actlens::report {

/// An sRGB colour.
struct rgb {
    std::uint8_t r = 255, g = 255, b = 255;

    /// "#rrggbb".
    std::string hex() const {
        static constexpr char digits[] = "0123456789abcdef";
        std::string s = "#";
        for (const std::uint8_t c : {r, g, b}) {
            s += digits[c >> 4];
            s += digits[c & 15];
        }
        return s;
    }

    /// Relative luminance in [0, 1] (sRGB weights without gamma: enough to pick a text colour).
    double luminance() const { return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255.0; }

    friend bool operator==(const rgb& a, const rgb& b) { return a.r == b.r && a.g == b.g && a.b == b.b; }
    friend bool operator!=(const rgb& a, const rgb& b) { return !(a == b); }
};

/// The colour `t` of the way from `from` to `to` (t clamped to [0, 1]).
inline rgb mix(rgb from, rgb to, double t) {
    t = std::clamp(t, 0.0, 1.0);
    const auto channel = [t](std::uint8_t a, std::uint8_t b) {
        return static_cast<std::uint8_t>(std::lround(a + (double(b) - double(a)) * t));
    };
    return {channel(from.r, to.r), channel(from.g, to.g), channel(from.b, to.b)};
}

/// Colour shown for NaN cells (with a cross drawn over them, so they are not mistaken for a value).
inline constexpr rgb nan_color{200, 200, 200};

enum class scale_kind {
    diverging, ///< [-limit, +limit]: blue, white at 0, red
    sequential ///< [0, limit]: white to purple
};

/// A colour scale over [-limit, limit] (diverging) or [0, limit] (sequential).
struct color_scale {
    scale_kind kind = scale_kind::diverging;
    double limit = 1.0; ///< the magnitude that gets the full colour; <= 0 or non-finite: everything white

    static constexpr rgb white{255, 255, 255};
    static constexpr rgb negative{33, 102, 172}; ///< -limit
    static constexpr rgb positive{178, 24, 43};  ///< +limit
    static constexpr rgb high{63, 0, 125};       ///< the sequential scale's limit

    /// The colour of `v`; NaN gets nan_color.
    rgb operator()(double v) const {
        if (std::isnan(v)) return nan_color;
        if (!(limit > 0) || !std::isfinite(limit)) return white;
        const double t = v / limit;
        if (kind == scale_kind::sequential) return mix(white, high, t);
        return t < 0 ? mix(white, negative, -t) : mix(white, positive, t);
    }

    /// The scale whose limit is the largest finite |value| of `values[0..n)` (1 when there is none,
    /// or when all are 0, so that a map of zeros is white rather than undefined).
    static color_scale fit(scale_kind kind, const double* values, std::size_t n) {
        double m = 0;
        for (std::size_t i = 0; i < n; ++i)
            if (std::isfinite(values[i])) m = std::max(m, std::abs(values[i]));
        return {kind, m > 0 ? m : 1.0};
    }
};

/// Black or white, whichever reads better on `background`.
inline rgb text_color_on(rgb background) { return background.luminance() > 0.55 ? rgb{0, 0, 0} : rgb{255, 255, 255}; }

} // namespace actlens::report
