#include "binary.h"

#include <unistd.h>

#include "cni_conf.h"
#include "colo/common/files.h"

namespace colo::installer {

Status installBinary(const std::string& source, const std::string& binDir) {
  auto data = files::read(source, 256 << 20);
  if (!data) return data.error();
  return files::writeAtomic(binDir + "/" + kPluginType, *data, 0755, {.durable = true, .tmpPath = binDir + "/.colo-cni.tmp." + std::to_string(::getpid())});
}

Status removeBinary(const std::string& binDir) {
  if (::unlink((binDir + "/" + kPluginType).c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink(" + binDir + "/colo-cni)");
  return {};
}

}  // namespace colo::installer
