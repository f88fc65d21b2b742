// Tests for actlens/error.hpp: fail() formats its arguments exactly as fmt::format does (it packs them
// one at a time, not through fmt::make_format_args over the whole list) and prefixes the stable id.
#include <actlens/error.hpp>

#include <catch2/catch.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace {

using actlens::errc;

/// What fail(code, format, args...) throws, or the message of the fmt::format_error it lets through.
template <class... Args>
std::string message_of(errc code, fmt::format_string<Args...> format, Args&&... args) {
    try {
        actlens::fail(code, format, std::forward<Args>(args)...);
    } catch (const actlens::error& e) {
        CHECK(e.code() == code);
        return e.what();
    }
    return "(nothing thrown)";
}

/// A type with its own formatter: fail must format the caller's object, not a copy that has gone.
struct point {
    int x, y;
};

} // namespace

template <>
struct fmt::formatter<point> {
    constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
    // Writes its text itself: fmt::format_to here would call the libfmt's vformat_to, whose name
    // clang 14 mangles differently from the g++ that built Debian's libfmt (an undefined reference
    // in the clang build).
    template <class Context>
    auto format(const point& p, Context& ctx) const {
        const std::string text = "(" + std::to_string(p.x) + ", " + std::to_string(p.y) + ")";
        return std::copy(text.begin(), text.end(), ctx.out());
    }
};

TEST_CASE("fail: the message is the id then fmt::format of the arguments", "[error]") {
    const std::string prefix = "[actlens.io.204] ";
    std::string name = "model.bin";
    const std::string const_name = "tokenizer.json";
    const std::string_view view = "blocks.3.attn";
    const char* pointer = "c string";
    char buffer[] = "mutable";
    char* mutable_pointer = buffer;

    CHECK(message_of(errc::bad_header, "no arguments, braces {{}}") == prefix + "no arguments, braces {}");
    CHECK(message_of(errc::bad_header, "'{}' '{}' '{}' '{}' '{}'", name, const_name, view, pointer,
                     mutable_pointer) ==
          prefix + fmt::format("'{}' '{}' '{}' '{}' '{}'", name, const_name, view, pointer, mutable_pointer));
    CHECK(message_of(errc::bad_header, "{} {} {} {}", std::numeric_limits<std::uint64_t>::max(),
                     std::numeric_limits<std::int64_t>::min(), std::numeric_limits<int>::min(),
                     static_cast<unsigned char>(200)) ==
          prefix + fmt::format("{} {} {} {}", std::numeric_limits<std::uint64_t>::max(),
                               std::numeric_limits<std::int64_t>::min(), std::numeric_limits<int>::min(),
                               static_cast<unsigned char>(200)));
    // float keeps its own shortest form (0.1f is not printed as the double 0.100000001...).
    CHECK(message_of(errc::bad_header, "{} {} {:.3f} {:e} {} {}", 0.1f, 0.1, 2.0f / 3.0f,
                     std::numeric_limits<double>::denorm_min(), 'c', true) ==
          prefix + fmt::format("{} {} {:.3f} {:e} {} {}", 0.1f, 0.1, 2.0f / 3.0f,
                               std::numeric_limits<double>::denorm_min(), 'c', true));
    CHECK(message_of(errc::bad_header, "{1} before {0}", 1, "two") == prefix + "two before 1");
    CHECK(message_of(errc::bad_header, "at {}", point{3, -4}) == prefix + "at (3, -4)");
    // A temporary lives until fail has formatted it.
    CHECK(message_of(errc::bad_header, "{}", name + ".tmp") == prefix + "model.bin.tmp");
}

TEST_CASE("fail: more arguments than fmt packs into one word", "[error]") {
    // fmt stores up to 15 arguments' types in its descriptor; fail's list of separate arguments has no
    // such limit.
    const std::string last = "seventeenth";
    const std::string expected =
        fmt::format("{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}", 1, 2u, 3L, 4UL, 5.5, 6.5f, "7", 8, 9,
                    10, 11, 12, 13, 14, 15, 16, last);
    CHECK(message_of(errc::shape_mismatch, "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}", 1, 2u, 3L, 4UL,
                     5.5, 6.5f, "7", 8, 9, 10, 11, 12, 13, 14, 15, 16, last) ==
          "[actlens.arg.102] " + expected);
}

TEST_CASE("fail: an argument fmt refuses fails as fmt::format does", "[error]") {
    // fmt refuses a null C string with its own exception (fmt::format_error, a std::runtime_error);
    // fail lets it through unchanged rather than building an actlens::error from nothing.
    const char* null_text = nullptr;
    std::string fmt_message, fail_message;
    bool fail_threw_actlens_error = false;
    try {
        (void)fmt::format("{}", null_text);
    } catch (const std::runtime_error& e) {
        fmt_message = e.what();
    }
    try {
        actlens::fail(errc::bad_header, "{}", null_text);
    } catch (const actlens::error&) {
        fail_threw_actlens_error = true;
    } catch (const std::runtime_error& e) {
        fail_message = e.what();
    }
    REQUIRE_FALSE(fmt_message.empty());
    CHECK_FALSE(fail_threw_actlens_error);
    CHECK(fail_message == fmt_message);
}
