// CNI spec errors: the numeric codes of the spec, and the JSON a plugin prints for them.
#pragma once

#include <string>

namespace colo::cni {

enum class Code : unsigned {
  IncompatibleVersion = 1,
  UnsupportedField = 2,
  UnknownContainer = 3,
  InvalidEnvironment = 4,
  IoFailure = 5,
  DecodingFailure = 6,
  InvalidConfig = 7,
  TryAgainLater = 11,
  PluginNotAvailable = 50,
  LimitedConnectivity = 51,
  Internal = 999,
};

struct CniError {
  Code code = Code::Internal;
  std::string msg;
  std::string details;

  // The spec's error object, in the given cniVersion.
  std::string toJson(const std::string& cniVersion) const;
};

}  // namespace colo::cni
