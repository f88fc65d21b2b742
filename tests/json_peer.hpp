// tests/json_peer.hpp: compares a value of actlens/io/json.hpp with nlohmann::json's reading of the
// same text (the peer implementation), for tests/test_io_json.cpp and tests/fuzz/fuzz_json.cpp.
#pragma once

#include <actlens/io/json.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace actlens::test_json_peer {

/// True when `ours` holds what nlohmann parsed as `peer`: same kinds, same number classes (unsigned,
/// signed, floating) and values (floating ones bit for bit but for NaN, which neither reads), same
/// strings, same members (nlohmann sorts them; ours keep file order).
inline bool same_as_peer(const io::json_value& ours, const nlohmann::json& peer) {
    using io::json_kind;
    using io::json_number_class;
    switch (ours.kind()) {
    case json_kind::null: return peer.is_null();
    case json_kind::boolean: return peer.is_boolean() && peer.get<bool>() == ours.as_bool();
    case json_kind::number:
        switch (ours.number_class()) {
        case json_number_class::unsigned_integer:
            return peer.is_number_unsigned() && peer.get<std::uint64_t>() == ours.as_uint64();
        case json_number_class::signed_integer:
            return peer.is_number_integer() && !peer.is_number_unsigned() && peer.get<std::int64_t>() == ours.as_int64();
        case json_number_class::floating: {
            if (!peer.is_number_float()) return false;
            const double a = ours.as_double(), b = peer.get<double>();
            return a == b && std::signbit(a) == std::signbit(b);
        }
        }
        return false;
    case json_kind::string: return peer.is_string() && peer.get_ref<const std::string&>() == ours.as_string();
    case json_kind::array:
        if (!peer.is_array() || peer.size() != ours.size()) return false;
        for (std::size_t i = 0; i < ours.size(); ++i)
            if (!same_as_peer(ours[i], peer[i])) return false;
        return true;
    case json_kind::object:
        if (!peer.is_object() || peer.size() != ours.size()) return false;
        for (const auto& [key, value] : ours.members()) {
            const auto it = peer.find(key);
            if (it == peer.end() || !same_as_peer(value, *it)) return false;
        }
        return true;
    }
    return false;
}

} // namespace actlens::test_json_peer
