#include "metrics.h"

#include <cmath>
#include <sstream>

namespace colo::node {

std::string Metrics::labelText(const Labels& labels) {
  if (labels.empty()) return "";
  std::string s = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i) s += ",";
    s += labels[i].first + "=\"";
    for (char c : labels[i].second) {
      if (c == '\\' || c == '"') s += '\\';
      if (c == '\n') {
        s += "\\n";
        continue;
      }
      s += c;
    }
    s += "\"";
  }
  return s + "}";
}

void Metrics::describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.type = type;
  f.help = help;
}

void Metrics::add(const std::string& name, const Labels& labels, double delta) {
  std::lock_guard lock(mu_);
  families_[name].series[labelText(labels)] += delta;
}

void Metrics::set(const std::string& name, const Labels& labels, double value) {
  std::lock_guard lock(mu_);
  families_[name].series[labelText(labels)] = value;
}

void Metrics::remove(const std::string& name, const Labels& labels) {
  std::lock_guard lock(mu_);
  if (auto f = families_.find(name); f != families_.end()) f->second.series.erase(labelText(labels));
}

double Metrics::get(const std::string& name, const Labels& labels) const {
  std::lock_guard lock(mu_);
  auto f = families_.find(name);
  if (f == families_.end()) return 0;
  auto s = f->second.series.find(labelText(labels));
  return s == f->second.series.end() ? 0 : s->second;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::ostringstream out;
  for (const auto& [name, f] : families_) {
    if (!f.help.empty()) out << "# HELP " << name << " " << f.help << "\n";
    if (!f.type.empty()) out << "# TYPE " << name << " " << f.type << "\n";
    for (const auto& [labels, value] : f.series) {
      out << name << labels << " ";
      if (std::floor(value) == value && std::abs(value) < 1e15) out << static_cast<long long>(value);
      else out << value;
      out << "\n";
    }
  }
  return out.str();
}

}  // namespace colo::node
