// tests/test_helpers.hpp: small checks that many test files share: that a call throws an
// actlens::error with a given code (and message text), what message a call throws, and how far
// apart two tensors are.
#pragma once

#include <actlens/error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

/// Checks that f() throws an actlens::error with code `code` (the message is logged on failure).
template <class F>
void require_error(F&& f, actlens::errc code) {
    try {
        f();
        FAIL("no actlens::error was thrown");
    } catch (const actlens::error& e) {
        INFO(e.what());
        CHECK(e.code() == code);
    }
}

/// As above, and the message must contain `needle` (e.g. the name of the bad argument).
template <class F>
void require_error(F&& f, actlens::errc code, const std::string& needle) {
    try {
        f();
        FAIL("no actlens::error was thrown");
    } catch (const actlens::error& e) {
        INFO(e.what());
        REQUIRE(e.code() == code);
        REQUIRE(std::string(e.what()).find(needle) != std::string::npos);
    }
}

/// The message of the actlens::error f() throws, or "no error" when it returns normally.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const actlens::error& e) {
        return e.what();
    }
    return "no error";
}

/// The largest |a_i - b_i| over two contiguous tensors (or views) of the same shape, in double.
template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
    REQUIRE(a.shape() == b.shape());
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        worst = std::max(worst, std::fabs(double(a.data()[i]) - double(b.data()[i])));
    return worst;
}

/// True when two contiguous tensors have the same shape and the same bytes (so NaNs and signed
/// zeros count, as bit-identity claims need).
template <class A, class B>
bool same_bits(const A& a, const B& b) {
    static_assert(sizeof(*a.data()) == sizeof(*b.data()), "same_bits compares tensors of one type");
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(*a.data())) == 0;
}

/// The dot product of two vectors of the same length.
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}
