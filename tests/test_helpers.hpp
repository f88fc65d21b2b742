// tests/test_helpers.hpp: small checks that many test files share: that a call throws an
// actlens::error with a given code (and message text), or what message a call throws.
#pragma once

#include <actlens/error.hpp>

#include <catch2/catch.hpp>

#include <string>

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
