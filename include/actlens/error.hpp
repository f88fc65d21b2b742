// actlens/error.hpp: the one exception type of the library.
//
// Every bad input at a public boundary throws actlens::error. Its message starts with a stable id,
// "[actlens.<area>.<number>]", followed by text that names the file, field or argument and the
// offending value. Tests check the ids, so an id never changes meaning once released.
#pragma once

#include <fmt/core.h>

#include <stdexcept>
#include <string>
#include <type_traits>

namespace actlens {

/// Error identifiers, grouped by area. The hundreds digit selects the area in the message prefix.
enum class errc : int {
    // 1xx: arguments and tensors
    invalid_argument = 101,
    shape_mismatch = 102,
    out_of_range = 103,
    non_finite = 104,
    // 2xx: files and formats
    file_open = 201,
    file_truncated = 202,
    bad_magic = 203,
    bad_header = 204,
    size_overflow = 205,
    unsupported_format = 206,
    // 3xx: tokenizers
    tokenizer_file = 301,
    token_out_of_range = 302,
    empty_prompt = 303,
    // 4xx: models and hooks
    bad_config = 401,
    bad_hook_name = 402,
    bad_layer_range = 403,
    context_overflow = 404,
    // 5xx: generation
    bad_sampling = 501,
    // 6xx: distributed runs (actlens/mpi)
    remote_failure = 601, ///< another rank's part of a collective operation failed
};

/// The area name printed in an error id.
inline const char* errc_area(errc code) noexcept {
    switch (static_cast<int>(code) / 100) {
    case 1: return "arg";
    case 2: return "io";
    case 3: return "tokenizer";
    case 4: return "model";
    case 5: return "generate";
    case 6: return "mpi";
    default: return "unknown";
    }
}

/// The exception thrown for bad input: `what()` is "[actlens.<area>.<id>] <message>".
class error : public std::runtime_error {
public:
    error(errc code, const std::string& message)
        : std::runtime_error(fmt::format("[actlens.{}.{}] {}", errc_area(code), static_cast<int>(code),
                                         message)),
          m_code(code) {}

    /// The numbered identifier of this error.
    errc code() const noexcept { return m_code; }

private:
    errc m_code;
};

namespace detail {

/// The one body that formats and throws, for every call of fail.
[[noreturn]] inline void throw_error(errc code, fmt::string_view format, fmt::format_args args) {
    throw error(code, fmt::vformat(format, args));
}

/// One argument of fail, type-erased as fmt's own argument lists do it. Instantiated once per argument
/// type: fmt::make_format_args over a whole list costs a few milliseconds of compilation per distinct
/// list, and the library's few hundred calls of fail have some eighty distinct lists, compiled in every
/// file (README "Compile time"). The returned argument refers to `value` (strings, other objects) or
/// holds a copy of it (numbers and pointers), as the store it is taken from did.
template <class T>
fmt::format_context::format_arg format_arg_of(const T& value) {
    return fmt::format_args(fmt::make_format_args(value)).get(0);
}

/// fail's argument packing, instantiated once per list of argument types without their references
/// and const (fail itself is instantiated per exact list, e.g. `std::string&` and `const std::string&`).
template <class... Args>
[[noreturn]] void throw_formatted(errc code, fmt::string_view format, const Args&... args) {
    if constexpr (sizeof...(Args) == 0) {
        throw_error(code, format, fmt::format_args());
    } else {
        const fmt::format_context::format_arg list[] = {format_arg_of(args)...};
        throw_error(code, format, fmt::format_args(list, static_cast<int>(sizeof...(Args))));
    }
}

} // namespace detail

/// Throws actlens::error with a message formatted by fmt (as fmt::format would).
template <class... Args>
[[noreturn]] void fail(errc code, fmt::format_string<Args...> format, Args&&... args) {
    detail::throw_formatted<std::decay_t<Args>...>(code, format, args...);
}

} // namespace actlens

/// Internal invariant: throws (never aborts) so that tests and notebooks see a failure as an error.
#define ACTLENS_ASSERT(condition)                                                                  \
    do {                                                                                           \
        if (!(condition))                                                                          \
            ::actlens::fail(::actlens::errc::invalid_argument, "internal assertion failed: {} ({}:{})", \
                            #condition, __FILE__, __LINE__);                                       \
    } while (false)
