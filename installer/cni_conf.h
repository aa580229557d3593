// The JSON side of chaining colo-cni: what a primary's network configuration looks like, where
// colo-cni's entry goes in it, and which configuration runtimes load. No file is written here.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "colo/common/error.h"

namespace colo::installer {

using ojson = nlohmann::ordered_json;  // keep the primary CNI's key order when rewriting its file

inline constexpr const char* kPluginType = "colo-cni";
// The conflist colo generates beside a single-plugin X.conf or X.json: "X.colo.conflist" sorts
// before both ("l" < "n", "c" < "j"), so runtimes load it, and the primary's file is never touched.
inline constexpr const char* kGeneratedSuffix = ".colo.conflist";

// The plugin entry colo appends, with the capability that makes runtimes pass pod annotations.
ojson coloPlugin(const ojson& extra);
// Index of the colo-cni entry in a conflist's top-level plugins.
std::optional<std::size_t> coloIndex(const ojson& conflist);
// Whether any object anywhere in the document has "type": "colo-cni" (a Multus delegate, say).
bool namesColo(const ojson& doc);
// The conflist with colo-cni's entry set to `entry`: replaced where it is, else appended.
ojson withColo(ojson conflist, const ojson& entry);
ojson removeColo(ojson conflist);
// An entry's canonical text (keys sorted, compact), to compare entries whatever their key order.
std::string canonical(const ojson& entry);
// A single-plugin .conf as a conflist whose first plugin is the original.
ojson confToConflist(const ojson& conf);
// Chaining needs a cniVersion colo-cni speaks (0.3.0 to 1.1.0); a clear error otherwise.
Status checkVersion(const ojson& doc, const std::string& path);
// The plugin types of a configuration, for messages: "cilium-cni", "calico, portmap, bandwidth".
std::string pluginTypes(const ojson& doc);
// What to tell the operator when the primary keeps removing colo-cni from `file`.
std::string fightAdvice(const ojson& doc, const std::string& file);

// Files runtimes consider, as libcni lists them: *.conf, *.conflist, *.json in the directory
// (regular files or links to them), sorted by name. Full paths.
std::vector<std::string> configFiles(const std::string& confDir);
// The file runtimes load: the first of configFiles().
std::optional<std::string> activeConfig(const std::string& confDir);
// Every file under confDir (any depth) with a CNI extension whose JSON names colo-cni.
std::vector<std::string> filesNamingColo(const std::string& confDir);

}  // namespace colo::installer
