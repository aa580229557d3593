// Splits a watch stream into its events: one JSON document per line, however the bytes were
// chunked. Works on raw bytes, so a chunk boundary inside a multi-byte UTF-8 character or inside
// an event is just more bytes to keep; a line is only ever decoded whole.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace colo::node::kube {

class LineDecoder {
 public:
  explicit LineDecoder(std::size_t maxLine = 16u << 20) : maxLine_(maxLine) {}

  // Calls onLine(line) for every complete, non-empty line. Returns false when a line grows past
  // maxLine (a broken stream: the caller restarts it).
  template <typename OnLine>
  bool feed(const char* data, std::size_t n, OnLine&& onLine) {
    std::string_view in(data, n);
    while (!in.empty()) {
      const auto nl = in.find('\n');
      if (nl == std::string_view::npos) {
        partial_.append(in);
        return partial_.size() <= maxLine_;
      }
      if (partial_.empty()) {
        emit(in.substr(0, nl), onLine);
      } else {
        partial_.append(in.substr(0, nl));
        if (partial_.size() > maxLine_) return false;
        emit(std::string_view(partial_), onLine);
        partial_.clear();
      }
      in.remove_prefix(nl + 1);
    }
    return true;
  }
  // Bytes of an event the stream was cut in the middle of (dropped, never decoded).
  std::size_t pending() const { return partial_.size(); }
  void reset() { partial_.clear(); }

 private:
  template <typename OnLine>
  static void emit(std::string_view line, OnLine& onLine) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) onLine(line);
  }
  std::string partial_;
  std::size_t maxLine_;
};

}  // namespace colo::node::kube
