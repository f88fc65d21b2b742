// actlens/config.hpp: version numbers and the internal assertion macro.
#pragma once

#define ACTLENS_VERSION_MAJOR 0
#define ACTLENS_VERSION_MINOR 1
#define ACTLENS_VERSION_PATCH 0

namespace actlens {

/// The library version as "major.minor.patch".
inline constexpr const char* version_string = "0.1.0";

} // namespace actlens
