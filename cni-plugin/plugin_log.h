// colo-cni's log: one line per write(2) on an O_APPEND file, so concurrent plugin runs never
// interleave within a line. No logging library: the plugin is a static binary copied onto hosts.
#pragma once

#include <optional>
#include <string>

namespace colo::cni::plog {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

std::optional<Level> parseLevel(const std::string& s);  // trace|debug|info|warn|warning|error|off
// Opens (creating the parent directory) the log file; failures leave logging off, silently:
// nothing but the CNI result may reach stdout.
void open(const std::string& file, Level level);
void close();
void write(Level level, const std::string& msg);

inline void debug(const std::string& m) { write(Level::Debug, m); }
inline void info(const std::string& m) { write(Level::Info, m); }
inline void warn(const std::string& m) { write(Level::Warn, m); }
inline void error(const std::string& m) { write(Level::Error, m); }

}  // namespace colo::cni::plog
