#include "conf_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "colo/common/unique_fd.h"

namespace colo::installer {

namespace fs = std::filesystem;

Expected<FileMeta> statFile(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return Error::fromErrno("stat(" + path + ")");
  return FileMeta{static_cast<unsigned>(st.st_mode & 07777), st.st_uid, st.st_gid};
}

std::string resolved(const std::string& path) {
  std::error_code ec;
  if (!fs::is_symlink(path, ec)) return path;
  auto real = fs::canonical(path, ec);
  return ec ? path : real.string();
}

Status replaceKeeping(const std::string& path, const std::string& content, const FileMeta& meta) {
  const std::string real = resolved(path);
  // No CNI extension: a runtime listing the directory never loads a half-written file. A name of
  // this call's own (mkstemp): another installer's temporary file is never ours to overwrite.
  std::string tmp = fs::path(real).parent_path().string() + "/.colo-cni.tmp.XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return Error::fromErrno("mkostemp(" + tmp + ")");
  auto fail = [&](const std::string& site) {
    auto e = Error::fromErrno(site);
    ::unlink(tmp.c_str());
    return e;
  };
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write(" + tmp + ")");
    done += static_cast<std::size_t>(n);
  }
  // Owner first: chown clears set-id bits, the mode then comes out exactly as it was.
  // (Skipped when it would change nothing: CAP_CHOWN is needed only for files of other owners.)
  if ((meta.uid != ::geteuid() || meta.gid != ::getegid()) && ::fchown(fd.get(), meta.uid, meta.gid) != 0) {
    return fail("fchown(" + tmp + ")");
  }
  if (::fchmod(fd.get(), meta.mode) != 0) return fail("fchmod(" + tmp + ")");
  if (::fsync(fd.get()) != 0) return fail("fsync(" + tmp + ")");
  fd.reset();
  if (::rename(tmp.c_str(), real.c_str()) != 0) return fail("rename(" + tmp + ", " + real + ")");
  UniqueFd dir(::open(fs::path(real).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
  return {};
}

}  // namespace colo::installer
