// colo-cni's binary in the host's CNI bin directory.
#pragma once

#include <string>

#include "colo/common/error.h"

namespace colo::installer {

// Copies the binary under a temporary name in binDir, then renames it into place: a runtime never
// runs half a binary, and an upgrade replaces it even while the old one runs.
Status installBinary(const std::string& source, const std::string& binDir);
Status removeBinary(const std::string& binDir);

}  // namespace colo::installer
