// The fields of colo-cni's requests, checked as they are read (shared by the verbs and the spool).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "colo/common/names.h"
#include "colo/common/wire.h"

namespace colo::node::cnifields {

using json = nlohmann::json;
using proto::ErrorCode;

// Thrown inside handlers for a bad field; turned into an invalid_argument reply.
struct BadField {
  ErrorCode code;
  std::string message;
};

inline std::string str(const json& obj, const char* key, bool required, std::size_t maxLen = 253) {
  if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) {
    if (required) throw BadField{ErrorCode::BadRequest, std::string("missing '") + key + "'"};
    return {};
  }
  if (!obj[key].is_string()) throw BadField{ErrorCode::BadRequest, std::string("'") + key + "' must be a string"};
  auto s = obj[key].get<std::string>();
  if (s.size() > maxLen) throw BadField{ErrorCode::InvalidArgument, std::string("'") + key + "' is too long"};
  return s;
}

struct AttachmentRef {
  std::string network, containerId, ifname;
};

inline AttachmentRef attachment(const json& req) {
  if (!req.contains("attachment") || !req["attachment"].is_object()) throw BadField{ErrorCode::BadRequest, "missing object 'attachment'"};
  const json& a = req["attachment"];
  AttachmentRef r{str(a, "network", true), str(a, "containerID", true, 256), str(a, "ifname", true, 15)};
  if (r.network.empty()) throw BadField{ErrorCode::InvalidArgument, "attachment network is empty"};
  if (!names::isContainerId(r.containerId)) throw BadField{ErrorCode::InvalidArgument, "invalid containerID '" + r.containerId + "'"};
  if (!names::isIfName(r.ifname)) throw BadField{ErrorCode::InvalidArgument, "invalid ifname '" + r.ifname + "'"};
  return r;
}


inline std::vector<std::string> ipList(const json& req) {
  std::vector<std::string> out;
  if (!req.contains("ips") || req["ips"].is_null()) return out;
  if (!req["ips"].is_array()) throw BadField{ErrorCode::BadRequest, "'ips' must be an array"};
  for (const auto& ip : req["ips"]) {
    if (!ip.is_string() || ip.get<std::string>().size() > 64) throw BadField{ErrorCode::BadRequest, "'ips' must hold address strings"};
    out.push_back(ip.get<std::string>());
  }
  return out;
}

}  // namespace colo::node::cnifields
