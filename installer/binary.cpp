#include "binary.h"

#include <unistd.h>

#include <filesystem>

#include "cni_conf.h"
#include "colo/common/files.h"

namespace colo::installer {

Status installBinary(const std::string& source, const std::string& binDir) {
  auto data = files::read(source, 256 << 20);
  if (!data) return data.error();
  return files::writeAtomic(binDir + "/" + kPluginType, *data, 0755, {.durable = true, .tmpPath = binDir + "/.colo-cni.tmp." + std::to_string(::getpid())});
}

Status removeBinary(const std::string& binDir) {
  // A copy an installer killed mid-install left behind goes too.
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(binDir, ec)) {
    if (f.path().filename().string().rfind(".colo-cni.tmp.", 0) == 0) std::filesystem::remove(f.path(), ec);
  }
  if (::unlink((binDir + "/" + kPluginType).c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink(" + binDir + "/colo-cni)");
  return {};
}

}  // namespace colo::installer
