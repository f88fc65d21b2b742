// Tests of actlens/fwd.hpp: its declarations agree with the definitions. The header comes first and
// the umbrella after it, so a forward declaration that no longer matches (a struct turned class, a
// template parameter added, an enum's underlying type changed) stops this file from compiling;
// the functions below are declared with the forward declarations only, as a user's header would.
#include <actlens/fwd.hpp>

#include <cstddef>
#include <string>

namespace fwd_user {
std::size_t elements(const actlens::tensor<float>& t);
actlens::errc code_of(const actlens::error& e);
std::size_t rank_of(const actlens::snmf_options& options);
} // namespace fwd_user

#include "test_helpers.hpp"

#include <actlens/actlens.hpp>
#include <actlens/fwd.hpp> // again, after the definitions

#include <catch2/catch.hpp>

#include <type_traits>

namespace fwd_user {
std::size_t elements(const actlens::tensor<float>& t) { return t.size(); }
actlens::errc code_of(const actlens::error& e) { return e.code(); }
std::size_t rank_of(const actlens::snmf_options& options) { return options.rank; }
} // namespace fwd_user

static_assert(std::is_same_v<actlens::transformer, actlens::basic_transformer<float>>);
static_assert(std::is_same_v<std::underlying_type_t<actlens::errc>, int>);

TEST_CASE("fwd: functions declared with the forward declarations work on the full types", "[fwd]") {
    const actlens::tensor<float> t({2, 3});
    CHECK(fwd_user::elements(t) == 6);
    const actlens::error e(actlens::errc::shape_mismatch, "shape");
    CHECK(fwd_user::code_of(e) == actlens::errc::shape_mismatch);
    actlens::snmf_options options;
    options.rank = 7;
    CHECK(fwd_user::rank_of(options) == 7);
}
