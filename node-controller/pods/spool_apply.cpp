// Applying colo-cni's spool at start: what it could not deliver while colo-node was unreachable.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <map>

#include "colo/common/spool.h"
#include "pods/cni_fields.h"
#include "pods/cni_handler.h"

namespace colo::node {

namespace {
using json = nlohmann::json;
using cnifields::AttachmentRef;
using cnifields::attachment;

std::string attachmentKey(const json& body) {
  const json a = body.value("attachment", json::object());
  if (!a.is_object()) return {};
  return a.value("network", "") + "/" + a.value("containerID", "") + "/" + a.value("ifname", "");
}
}  // namespace

std::size_t CniHandler::applySpool(const std::string& dir) {
  std::vector<std::string> problems;
  auto records = spool::readAll(dir, problems);
  for (const auto& p : problems) spdlog::error("spool: {}", p);
  // Only each attachment's last record counts: an ADD followed by its DEL leaves nothing to do.
  std::map<std::string, std::size_t> last;
  for (std::size_t i = 0; i < records.size(); ++i) last[attachmentKey(records[i].body)] = i;

  std::size_t applied = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const json& body = records[i].body;
    const std::string op = body.value("op", "");
    const auto written = body.value("writtenUnixMs", std::int64_t{0});
    std::string result;
    try {
      const AttachmentRef a = attachment(body);
      const std::string what = op + " " + a.network + "/" + a.containerId.substr(0, 12) + "/" + a.ifname;
      auto held = registry_.findByAttachment(a.network, a.containerId, a.ifname);
      if (last[attachmentKey(body)] != i) {
        result = "superseded";
      } else if (op == "cni.del") {
        // Nothing late: a pod held since after the DEL was written is not the one it meant.
        if (!held) result = "nothing_held";
        else if (held->addedUnixMs > written) result = "newer_add";
        else result = del(body).value("ok", false) ? "applied" : "failed";
      } else if (op == "cni.add") {
        Pod pod = parseAdd(body);
        auto fd = pod.netnsPath.empty() ? Expected<UniqueFd>(Error::make("not_found", "no netns path")) : netns::open(pod.netnsPath);
        auto id = fd ? netns::inspect(fd->get()) : Expected<netns::Identity>(fd.error());
        const netns::Identity want{body.value("netnsInode", std::uint64_t{0}), body.value("netnsDevice", std::uint64_t{0}),
                                   body.value("netnsCookie", std::uint64_t{0})};
        if (body.value("optIn", json(nullptr)) == false) result = "not_opted_in";
        else if (want.cookie == 0) result = "netns_unverifiable";  // inode/device alone may name a re-created netns
        else if (!id || !(*id == want)) result = "netns_gone_or_replaced";  // never adopt into a netns the ADD did not mean
        else if (held && held->netns == *id) result = "already_held";
        else if (auto byKey = registry_.get(pod.key); byKey && byKey->addedUnixMs > written) result = "newer_add";
        else result = applyAdd(body, std::move(pod), std::move(fd.value()), true).value("ok", false) ? "applied" : "failed";
      } else {
        result = "unknown_op";
      }
      spdlog::info("spool: {} (written {} ms ago): {}", what, nowUnixMs() - written, result);
    } catch (const cnifields::BadField& e) {
      result = "bad_record";
      spdlog::error("spool: {}: {}", records[i].path, e.message);
    } catch (const std::exception& e) {
      result = "bad_record";
      spdlog::error("spool: {}: {}", records[i].path, e.what());
    } catch (...) {
      result = "bad_record";
      spdlog::error("spool: {}: not a valid record", records[i].path);
    }
    if (result == "applied") ++applied;
    metrics_.add("colo_spool_records_total", {{"op", op}, {"result", result}});
    // Applied once: the record goes. Should unlink fail, the checks above make a second pass a no-op.
    if (::unlink(records[i].path.c_str()) != 0) spdlog::error("spool: {}", Error::fromErrno("unlink(" + records[i].path + ")").message);
  }
  return applied;
}

}  // namespace colo::node
