// Kubernetes resource quantities for byte sizes: "64Mi", "1Gi", "512M", "1048576".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "colo/common/error.h"

namespace colo::quantity {

// Whole numbers with an optional binary (Ki Mi Gi Ti) or decimal (k M G T) suffix; no fractions,
// no exponents, no negatives. Errors name the input.
Expected<std::uint64_t> parseBytes(std::string_view s);

// The shortest exact binary form: 67108864 -> "64Mi", 1000 -> "1000".
std::string formatBytes(std::uint64_t bytes);

}  // namespace colo::quantity
