#include "colo/common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "colo/common/unique_fd.h"

namespace colo::files {

Status makeDirs(const std::string& path, unsigned mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Error{"io", "mkdir(" + path + "): " + ec.message(), ec.value()};
  if (::chmod(path.c_str(), mode) != 0) return Error::fromErrno("chmod(" + path + ")");
  return {};
}

Status writeAtomic(const std::string& path, const std::string& content, unsigned mode, const WriteOptions& options) {
  const std::string tmp = options.tmpPath.empty() ? path + ".tmp." + std::to_string(::getpid()) : options.tmpPath;
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return Error::fromErrno("open(" + tmp + ")");
  ::fchmod(fd.get(), mode);
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto err = Error::fromErrno("write(" + tmp + ")");
      ::unlink(tmp.c_str());
      return err;
    }
    done += static_cast<std::size_t>(n);
  }
  if (options.durable && ::fsync(fd.get()) != 0) {
    auto err = Error::fromErrno("fsync(" + tmp + ")");
    ::unlink(tmp.c_str());
    return err;
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto err = Error::fromErrno("rename(" + tmp + ", " + path + ")");
    ::unlink(tmp.c_str());
    return err;
  }
  return {};
}

Expected<std::string> read(const std::string& path, std::size_t maxBytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::fromErrno("open(" + path + ")");
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::fromErrno("read(" + path + ")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > maxBytes) return Error::make("too_large", path + " is larger than " + std::to_string(maxBytes) + " bytes");
  }
  return out;
}

}  // namespace colo::files
