#include "cni_conf.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "colo/common/files.h"
#include "spec_version.h"

namespace colo::installer {

namespace fs = std::filesystem;

ojson coloPlugin(const ojson& extra) {
  ojson p = {{"type", kPluginType}, {"capabilities", {{"io.kubernetes.cri.pod-annotations", true}}}};
  if (extra.is_object()) {
    for (const auto& [k, v] : extra.items()) {
      if (k != "type" && k != "capabilities") p[k] = v;
    }
  }
  return p;
}

std::optional<std::size_t> coloIndex(const ojson& conflist) {
  if (!conflist.is_object() || !conflist.contains("plugins") || !conflist["plugins"].is_array()) return std::nullopt;
  const auto& plugins = conflist["plugins"];
  for (std::size_t i = 0; i < plugins.size(); ++i) {
    if (plugins[i].is_object() && plugins[i].value("type", "") == kPluginType) return i;
  }
  return std::nullopt;
}

bool namesColo(const ojson& doc) {
  if (doc.is_object()) {
    auto t = doc.find("type");
    if (t != doc.end() && t->is_string() && t->get<std::string>() == kPluginType) return true;
    return std::any_of(doc.begin(), doc.end(), [](const ojson& v) { return namesColo(v); });
  }
  if (doc.is_array()) return std::any_of(doc.begin(), doc.end(), [](const ojson& v) { return namesColo(v); });
  return false;
}

ojson withColo(ojson conflist, const ojson& entry) {
  if (auto i = coloIndex(conflist)) conflist["plugins"][*i] = entry;
  else conflist["plugins"].push_back(entry);
  return conflist;
}

ojson removeColo(ojson conflist) {
  if (!conflist.is_object() || !conflist.contains("plugins") || !conflist["plugins"].is_array()) return conflist;
  ojson kept = ojson::array();
  for (const auto& p : conflist["plugins"]) {
    if (!(p.is_object() && p.value("type", "") == kPluginType)) kept.push_back(p);
  }
  conflist["plugins"] = kept;
  return conflist;
}

std::string canonical(const ojson& entry) { return nlohmann::json::parse(entry.dump()).dump(); }

ojson confToConflist(const ojson& conf) {
  ojson plugin = conf;
  plugin.erase("cniVersion");
  plugin.erase("name");
  return ojson{{"cniVersion", conf.value("cniVersion", "")}, {"name", conf.value("name", "")}, {"plugins", ojson::array({plugin})}};
}

Status checkVersion(const ojson& doc, const std::string& path) {
  const auto v = doc.find("cniVersion");
  const std::string version = v != doc.end() && v->is_string() ? v->get<std::string>() : "";
  if (cni::isSupported(version)) return {};
  return Error::make("unsupported_version",
                     path + " has cniVersion " + (version.empty() ? std::string("(none)") : "\"" + version + "\"") +
                         "; chaining needs one colo-cni speaks (" + cni::supportedList() +
                         "): left untouched, colo-cni is NOT chained (pods start without colo). Upgrade the primary CNI's "
                         "configuration to 0.3.0 or later.");
}

std::string pluginTypes(const ojson& doc) {
  std::string out;
  auto add = [&](const ojson& p) {
    if (p.is_object() && p.contains("type") && p["type"].is_string()) out += (out.empty() ? "" : ", ") + p["type"].get<std::string>();
  };
  if (doc.contains("plugins") && doc["plugins"].is_array()) {
    for (const auto& p : doc["plugins"]) add(p);
  } else {
    add(doc);
  }
  return out;
}

std::string fightAdvice(const ojson& doc, const std::string& file) {
  const std::string types = pluginTypes(doc);
  if (types.find("cilium-cni") != std::string::npos) {
    // Cilium's agent rewrites its file whenever it differs from what it generates, whatever
    // cni.exclusive says; its documented way to add a plugin is to hand it the whole conflist.
    return "Cilium rewrites " + file +
           " whenever it differs from the configuration it generates. Let Cilium write colo-cni into its chain: put a "
           "conflist whose plugins are cilium-cni followed by {\"type\":\"colo-cni\",...} in a ConfigMap and install "
           "Cilium with cni.configMap=<that ConfigMap> (cni.configMapKey=<its key>) and cni.exclusive=false, or write "
           "the file yourself with cni.customConf=true. colo then finds colo-cni in the chain and leaves it as it is. "
           "See docs/install.md (Primary CNIs).";
  }
  return "the primary CNI (" + types + ") keeps rewriting " + file +
         "; if it does so on every change, configure it to include colo-cni in the chain it writes, or point "
         "cni.confFile at a file it does not manage. See docs/install.md (Primary CNIs).";
}

namespace {

bool cniExtension(const fs::path& p) {
  const auto ext = p.extension().string();
  return ext == ".conf" || ext == ".conflist" || ext == ".json";
}

}  // namespace

std::vector<std::string> configFiles(const std::string& confDir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(confDir, ec)) {
    // is_regular_file follows links: a link to a config counts, a dangling link does not.
    if (!e.is_regular_file(ec) || !cniExtension(e.path())) continue;
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  for (auto& n : names) n = confDir + "/" + n;
  return names;
}

std::optional<std::string> activeConfig(const std::string& confDir) {
  auto all = configFiles(confDir);
  if (all.empty()) return std::nullopt;
  return all.front();
}

std::vector<std::string> filesNamingColo(const std::string& confDir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(confDir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (!it->is_regular_file(ec) || !cniExtension(it->path())) continue;
    auto text = files::read(it->path().string());
    if (!text) continue;
    const ojson j = ojson::parse(*text, nullptr, false);
    if (!j.is_discarded() && namesColo(j)) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace colo::installer
