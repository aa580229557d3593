#include "chainer.h"

#include <unistd.h>

#include <filesystem>

#include "colo/common/files.h"
#include "conf_files.h"

namespace colo::installer {

namespace fs = std::filesystem;

namespace {

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string generatedName(const std::string& source) {
  const fs::path p(source);
  return (p.parent_path() / (p.stem().string() + kGeneratedSuffix)).string();
}

ojson parse(const std::string& text) { return ojson::parse(text, nullptr, false); }

std::string dump(const ojson& j) { return j.dump(2) + "\n"; }

// Whether the colo-cni entry at `idx` of `doc` is one colo wrote into this file. Decided by
// content, not by the record alone: a primary that writes its own colo-cni entry (Cilium with
// cni.configMap, as colo's advice says) makes the file its own again.
bool oursIn(const Entry* e, const ojson& doc, std::size_t idx) {
  return e && e->kind == "appended" && e->wrote(canonical(doc["plugins"][idx]));
}

// Takes colo-cni's entry out of an appended file: the primary's own bytes when nothing else
// changed it meanwhile, else the file as it is now without colo-cni (their changes are kept).
// An entry colo did not write is left where it is.
Status restoreAppended(const Entry& e) {
  if (!exists(e.file)) return {};  // the primary removed it: nothing to give back
  auto text = files::read(e.file);
  if (!text) return text.error();
  const ojson cur = parse(*text);
  if (cur.is_discarded()) return {};
  const auto idx = coloIndex(cur);
  if (!idx || !oursIn(&e, cur, *idx)) return {};  // rewritten without colo's entry (perhaps with its own)
  auto meta = statFile(e.file);
  if (!meta) return meta.error();
  const ojson without = removeColo(cur);
  const ojson original = parse(e.original);
  return replaceKeeping(e.file, !original.is_discarded() && original == without ? e.original : dump(without), *meta);
}

Status undo(const Entry& e) {
  if (e.kind == "appended") return restoreAppended(e);
  if (::unlink(e.file.c_str()) != 0 && errno != ENOENT) return Error::fromErrno("unlink(" + e.file + ")");
  return {};
}

// The file colo-cni belongs in: the one named, or the one runtimes load (colo's own generated
// files left out: they stand for their source).
std::string targetFile(const ChainOptions& o, State& st) {
  if (!o.confFile.empty()) {
    const std::string named = o.confDir + "/" + o.confFile;
    return exists(named) ? named : "";
  }
  for (const auto& f : configFiles(o.confDir)) {
    const Entry* e = st.find(f);
    if (!(e && e->kind == "generated")) return f;
  }
  return "";
}

// Temporary files of an installer killed mid-write. Under the directory's lock no other installer
// is writing, so every one there is stale.
void removeStaleTemporaries(const std::string& confDir) {
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(confDir, ec)) {
    const std::string name = f.path().filename().string();
    if (name.rfind(".colo-cni.tmp.", 0) == 0 || name.rfind(std::string(kStateFile) + ".tmp.", 0) == 0) fs::remove(f.path(), ec);
  }
}

}  // namespace

Expected<ChainResult> chain(const ChainOptions& o) {
  auto lock = DirLock::acquire(o.confDir);
  if (!lock) return lock.error();
  removeStaleTemporaries(o.confDir);
  auto loaded = loadState(o.confDir);
  if (!loaded) return loaded.error();
  State& st = *loaded;
  ChainResult r;

  // A primary's file that is away is remembered (it may be back in a moment, with colo's entry
  // in it: mv away and back, a ConfigMap's link swapped). A generated file whose source is gone
  // goes (it would otherwise keep a deleted network alive under colo's name).
  for (const Entry& e : std::vector<Entry>(st.entries)) {
    if (e.kind == "generated" && !exists(e.source)) {
      if (auto s = undo(e); !s) return s.error();
      st.erase(e.file);
    }
  }
  auto save = [&]() -> Expected<ChainResult> {
    if (auto s = saveState(o.confDir, st); !s) return s.error();
    return r;
  };

  const std::string target = targetFile(o, st);
  if (target.empty()) {
    r.waiting = true;
    r.message = o.confFile.empty() ? "no CNI configuration in " + o.confDir + " yet (the primary CNI writes it); waiting"
                                   : o.confDir + "/" + o.confFile + " (cni.confFile) does not exist yet; waiting";
    return save();
  }
  r.file = target;
  auto text = files::read(target);
  if (!text) return text.error();
  const ojson doc = parse(*text);
  if (doc.is_discarded() || !doc.is_object()) {
    r.unreadable = true;
    r.message = target + " is not valid JSON; left untouched (fix it or remove it, then colo chains itself)";
    return save();
  }
  r.primary = pluginTypes(doc);
  r.advice = fightAdvice(doc, target);
  if (auto v = checkVersion(doc, target); !v) {
    r.message = v.error().message;
    return save();
  }
  auto meta = statFile(target);
  if (!meta) return meta.error();
  const ojson desired = coloPlugin(o.extra);
  const std::string foreign = "colo-cni is already in " + target +
                              " and colo-cni-installer did not put it there: left as it is (its settings are not "
                              "managed by colo; remove that entry to let colo manage it)";
  // What colo is about to do is recorded before the file changes, so that a SIGKILL between the
  // two leaves a state that still knows the entry (and the primary's bytes) as colo's.
  auto intend = [&]() -> Status { return saveState(o.confDir, st); };

  if (doc.contains("plugins")) {
    if (!doc["plugins"].is_array()) {
      r.message = target + ": 'plugins' is not an array; left untouched";
      return save();
    }
    Entry* e = st.find(target);
    const bool known = e && e->kind == "appended";
    const auto idx = coloIndex(doc);
    const bool ours = idx ? oursIn(e, doc, *idx) : known;
    if ((idx || namesColo(doc)) && !ours) {
      r.action = "foreign";
      r.message = foreign;
      if (known) {
        // Someone rewrote the file with a colo-cni entry of their own: the file is theirs now,
        // with colo-cni in it; colo neither changes nor removes that entry.
        r.message = target + " was rewritten with a colo-cni entry colo did not write (the primary CNI chains colo-cni "
                             "itself): left as it is, and no longer colo's to change or remove";
        st.erase(target);
      }
    } else if (idx && canonical(doc["plugins"][*idx]) == canonical(desired)) {
      r.action = "present";
    } else if (idx) {  // ours, with other settings: an upgrade changed them
      const std::string content = dump(withColo(doc, desired));
      e->remember(canonical(desired));
      e->edited = content;
      if (auto s = intend(); !s) return s.error();
      if (auto s = replaceKeeping(target, content, *meta); !s) return s.error();
      r.action = "updated";
    } else {
      const std::string content = dump(withColo(doc, desired));
      r.rechained = ours;
      if (ours) {
        e->original = *text;
        e->edited = content;
        e->remember(canonical(desired));
      } else {
        st.entries.push_back(Entry{"appended", target, "", *text, content, {canonical(desired)}});
      }
      if (auto s = intend(); !s) return s.error();
      if (auto s = replaceKeeping(target, content, *meta); !s) return s.error();
      r.action = "appended";
    }
  } else if (doc.contains("type") && doc["type"].is_string()) {
    if (doc["type"] == kPluginType) {
      r.message = target + " is a colo-cni configuration on its own, not a primary CNI's; left untouched";
      return save();
    }
    if (namesColo(doc)) {
      r.action = "foreign";
      r.message = foreign;
    } else {
      const std::string gen = generatedName(target);
      Entry* e = st.find(gen);
      const bool ours = e && e->kind == "generated";
      if (!ours && fs::exists(fs::symlink_status(gen))) {
        r.message = gen + " exists and is not colo's; " + target + " left untouched, colo-cni is NOT chained";
        return save();
      }
      const std::string content = dump(withColo(confToConflist(doc), desired));
      const bool had = exists(gen);
      auto current = had ? files::read(gen) : Expected<std::string>(std::string());
      if (!current) return current.error();
      if (ours && e->source == target && had && *current == content) {
        r.action = "present";
      } else {
        r.rechained = ours && !had;
        r.action = ours && had ? "updated" : "generated";
        if (ours) {
          e->source = target;
          e->edited = content;
        } else {
          st.entries.push_back(Entry{"generated", gen, target, "", content, {}});
        }
        if (auto s = intend(); !s) return s.error();
        if (auto s = replaceKeeping(gen, content, *meta); !s) return s.error();
      }
      r.file = gen;
    }
  } else {
    r.message = target + " has neither 'plugins' nor 'type'; left untouched";
    return save();
  }
  r.chained = true;

  // colo-cni lives in one file: out of every other file it was put in before (a primary that
  // moved, an earlier file that appeared). In after in, so no pod starts in between without it.
  for (const Entry& e : std::vector<Entry>(st.entries)) {
    if (e.file == r.file || (e.kind == "appended" && !exists(e.file))) continue;
    if (auto s = undo(e); !s) {
      (void)saveState(o.confDir, st);
      return s.error();
    }
    st.erase(e.file);
  }
  return save();
}

ChainResult inspect(const ChainOptions& o) {
  ChainResult r;
  std::string f;
  if (o.confFile.empty()) {
    f = activeConfig(o.confDir).value_or("");
  } else {
    const std::string named = o.confDir + "/" + o.confFile;
    f = exists(generatedName(named)) ? generatedName(named) : named;
  }
  r.file = f;
  if (f.empty() || !exists(f)) {
    r.message = "no CNI configuration in " + o.confDir;
    return r;
  }
  auto text = files::read(f);
  const ojson doc = text ? parse(*text) : ojson();
  r.chained = !doc.is_discarded() && namesColo(doc);
  if (!r.chained) r.message = "colo-cni is not in " + f;
  if (!doc.is_discarded() && doc.is_object()) r.advice = fightAdvice(doc, f);
  return r;
}

Status unchain(const std::string& confDir) {
  auto lock = DirLock::acquire(confDir);
  if (!lock) return lock.error();
  removeStaleTemporaries(confDir);
  auto loaded = loadState(confDir);
  if (!loaded) return loaded.error();
  State& st = *loaded;
  Status first;
  for (const Entry& e : std::vector<Entry>(st.entries)) {
    if (auto s = undo(e); !s) {
      if (first) first = s;
      continue;  // kept in the state: the next uninstall tries again
    }
    st.erase(e.file);
  }
  if (auto s = saveState(confDir, st); !s && first) first = s;
  return first;
}

}  // namespace colo::installer
