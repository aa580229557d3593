#include "colo/common/error.h"

#include <cstring>

namespace colo {

Error Error::fromErrno(const std::string& site, int err) {
  std::string code = "io";
  if (err == ENOENT) code = "not_found";
  else if (err == ETIMEDOUT || err == EAGAIN) code = "timeout";
  else if (err == ECONNREFUSED) code = "unavailable";
  else if (err == EACCES || err == EPERM) code = "permission_denied";
  return Error{code, site + ": " + std::strerror(err), err};
}

std::string Error::str() const { return code + ": " + message; }

}  // namespace colo
