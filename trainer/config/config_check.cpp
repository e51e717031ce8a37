#include "trainer/config/config_check.h"

#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "common/error.h"
#include "common/job_config.h"
#include "trainer/config/trainer_config.h"

namespace partune::trainer {

namespace {

// Refusals read "<where>: key 'section.key': reason" (trainer_config.cpp).
std::string key_named_in(const std::string& message) {
  const std::string marker = "key '";
  const auto at = message.find(marker);
  if (at == std::string::npos) return "";
  const auto end = message.find('\'', at + marker.size());
  return end == std::string::npos ? "" : message.substr(at + marker.size(), end - at - marker.size());
}

CheckResult refused(const std::string& message) { return {false, key_named_in(message), message}; }

}  // namespace

CheckResult check_args(const std::vector<std::string>& args, int world_size) {
  try {
    parse_trainer_args(args, world_size, 0);
    return {};
  } catch (const InputError& e) {
    return refused(e.what());
  }
}

void check_lines(std::istream& in, std::ostream& out) {
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    CheckResult r;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (!j.is_object() || !j.contains("config") || !j["world_size"].is_number_integer() ||
          j["world_size"].get<int64_t>() < 1)
        throw InputError("expected {\"world_size\": N >= 1, \"config\": {...}}");
      const JobConfig job = JobConfig::from_json(j["config"], "job config");
      trainer_config_from_job(job, "job config", static_cast<int>(j["world_size"].get<int64_t>()), 0);
    } catch (const InputError& e) {
      r = refused(e.what());
    } catch (const nlohmann::json::exception& e) {
      r = refused(std::string("not a JSON line: ") + e.what());
    }
    nlohmann::json o = {{"ok", r.ok}};
    if (!r.ok) {
      o["key"] = r.key;
      o["error"] = r.error;
    }
    out << o.dump() << "\n" << std::flush;
  }
}

}  // namespace partune::trainer
