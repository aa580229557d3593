#include "plugin_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace colo::cni::plog {
namespace {

int g_fd = -1;
Level g_level = Level::Off;

const char* name(Level l) {
  switch (l) {
    case Level::Debug: return "debug";
    case Level::Info: return "info ";
    case Level::Warn: return "warn ";
    case Level::Error: return "error";
    default: return "";
  }
}

}  // namespace

std::optional<Level> parseLevel(const std::string& s) {
  if (s == "trace" || s == "debug") return Level::Debug;
  if (s == "info") return Level::Info;
  if (s == "warn" || s == "warning") return Level::Warn;
  if (s == "error" || s == "critical") return Level::Error;
  if (s == "off") return Level::Off;
  return std::nullopt;
}

void open(const std::string& file, Level level) {
  close();
  g_level = level;
  if (file.empty() || level == Level::Off) return;
  const int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;
  g_fd = ::open(file.c_str(), flags, 0640);
  // Runs on every pod's start: make the directory (one level, e.g. /var/log/colo) only when missing.
  if (g_fd < 0 && errno == ENOENT) {
    if (const auto slash = file.rfind('/'); slash != std::string::npos && slash > 0) {
      ::mkdir(file.substr(0, slash).c_str(), 0755);
      g_fd = ::open(file.c_str(), flags, 0640);
    }
  }
}

void close() {
  if (g_fd >= 0) ::close(g_fd);
  g_fd = -1;
}

void write(Level level, const std::string& msg) {
  if (g_fd < 0 || level < g_level) return;
  const auto now = std::chrono::system_clock::now();
  const auto t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char head[96];
  const int n = std::snprintf(head, sizeof(head), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s colo-cni[%d]: ", tm.tm_year + 1900,
                              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms), name(level),
                              static_cast<int>(::getpid()));
  std::string line(head, static_cast<std::size_t>(n > 0 ? n : 0));
  line += msg;
  line += '\n';
  (void)!::write(g_fd, line.data(), line.size());
}

}  // namespace colo::cni::plog
