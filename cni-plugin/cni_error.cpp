#include "cni_error.h"

#include <nlohmann/json.hpp>

namespace colo::cni {

std::string CniError::toJson(const std::string& cniVersion) const {
  nlohmann::json j = {{"cniVersion", cniVersion}, {"code", static_cast<unsigned>(code)}, {"msg", msg}};
  if (!details.empty()) j["details"] = details;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace colo::cni
