// The spool: what colo-cni could not deliver to colo-node (an ADD or a DEL while the agent was
// down or hung), one JSON file per record, written atomically; colo-node applies the records at
// start, before it serves. One definition for the writer and the reader.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "colo/common/error.h"

namespace colo::spool {

// Beside the CNI socket (/run/colo/cni.sock -> /run/colo/spool): the same root-only run directory
// whoever computes it, colo-cni from its agentSocket or colo-node from its cniSocket.
std::string dirFor(const std::string& cniSocket);

struct Record {
  std::string path;  // the file it came from (reader) ; empty when writing
  nlohmann::json body;  // {"op":"cni.add"|"cni.del", "writtenUnixMs", "attachment", ... as sent to colo-node}
};

// Writes `body` as a new record (name orders by time; never overwrites). fsync'd, then renamed in.
Status write(const std::string& dir, const nlohmann::json& body);

// Every record in `dir`, oldest first. Files that do not parse are moved aside (".bad") and
// reported in `problems`; half-written temporary files are removed.
std::vector<Record> readAll(const std::string& dir, std::vector<std::string>& problems);

}  // namespace colo::spool
