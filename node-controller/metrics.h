// Prometheus counters and gauges, rendered in the text exposition format.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace colo::node {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  void describe(const std::string& name, const std::string& type, const std::string& help);
  void add(const std::string& name, const Labels& labels = {}, double delta = 1);
  void set(const std::string& name, const Labels& labels, double value);
  // Drops one series (a label set that no longer exists, e.g. a Service no longer translated).
  void remove(const std::string& name, const Labels& labels);
  double get(const std::string& name, const Labels& labels = {}) const;
  std::string render() const;

 private:
  struct Family {
    std::string type, help;
    std::map<std::string, double> series;  // rendered label set -> value
  };
  static std::string labelText(const Labels& labels);
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

}  // namespace colo::node
