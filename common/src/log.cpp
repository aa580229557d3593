#include "colo/common/log.h"

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace colo::log {
namespace {

// %* expands to the message as a JSON string (quoted and escaped).
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string s = nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
                              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(s.data(), s.data() + s.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

}  // namespace

Status validate(const Options& o) {
  if (o.format != "text" && o.format != "json") return Error::make("invalid_argument", "log format must be 'text' or 'json', not '" + o.format + "'");
  if (spdlog::level::from_str(o.level) == spdlog::level::off && o.level != "off") {
    return Error::make("invalid_argument", "unknown log level '" + o.level + "'");
  }
  return {};
}

Status setup(const Options& o) {
  if (auto v = validate(o); !v) return v;
  std::shared_ptr<spdlog::logger> logger;
  Status result;
  try {
    if (o.file.empty()) {
      logger = std::make_shared<spdlog::logger>(o.name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
      logger = std::make_shared<spdlog::logger>(o.name, std::make_shared<spdlog::sinks::basic_file_sink_mt>(o.file));
    }
  } catch (const std::exception& e) {
    logger = std::make_shared<spdlog::logger>(o.name, std::make_shared<spdlog::sinks::null_sink_mt>());
    result = Error::make("io", std::string("cannot open log file: ") + e.what());
  }
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  if (o.format == "json") {
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":"%n","pid":%P,"msg":%*})");
  } else {
    formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %-5l %n[%P]: %v");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(o.level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return result;
}

}  // namespace colo::log
