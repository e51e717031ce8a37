#include "tuner/study/record.h"

#include <cmath>

#include "tuner/trial/run_metrics.h"

namespace partune {

namespace {

nlohmann::json request_json(const TrialRequest& r) {
  return {{"fidelity", std::string(to_string(r.fidelity))}, {"steps", r.steps}, {"why", r.why}};
}

TrialRequest request_of(const nlohmann::json& d) {
  TrialRequest r;
  const auto f = parse_fidelity(d.at("fidelity").get<std::string>());
  if (!f) throw std::invalid_argument("unknown fidelity");
  r.fidelity = *f;
  r.steps = d.at("steps").get<int>();
  r.why = d.at("why").get<std::string>();
  return r;
}

}  // namespace

nlohmann::json launch_data(const TrialRequest& request) { return request_json(request); }

nlohmann::json result_data(const TrialRequest& request, const TrialOutcome& o) {
  nlohmann::json d = request_json(request);
  d["status"] = std::string(to_string(o.status));
  d["failure"] = std::string(to_string(o.failure));
  d["reason"] = o.reason;
  d["metrics"] = metrics_to_json(o.metrics);
  nlohmann::json counted = nlohmann::json::array();
  for (double v : o.counted)
    if (std::isfinite(v)) counted.push_back(v);  // JSON has no NaN; such a step counts for nothing anyway
  d["counted"] = counted;
  d["stopped_early"] = o.stopped_early;
  d["wall_s"] = o.wall_s;
  d["startup_s"] = optional_to_json(o.startup_s);
  d["host_peak_rss_gib"] = optional_to_json(o.host_peak_rss_gib);
  return d;
}

std::vector<StudyRecord> study_records(Store& store, const std::string& study) {
  std::vector<StudyRecord> out;
  for (const auto& e : store.events(study)) {
    const bool launch = e.kind == kLaunchEvent, result = e.kind == kResultEvent;
    if (e.kind == kRequeueEvent && e.trial) {  // its latest result is taken back
      for (auto it = out.rbegin(); it != out.rend(); ++it)
        if (it->kind == StudyRecord::Kind::Result && it->trial == *e.trial) {
          out.erase(std::next(it).base());
          break;
        }
      continue;
    }
    if (!launch && !result) continue;
    try {
      if (!e.trial) throw std::invalid_argument("no trial");
      StudyRecord r;
      r.kind = launch ? StudyRecord::Kind::Launch : StudyRecord::Kind::Result;
      r.trial = *e.trial;
      r.request = request_of(e.data);
      if (result) {
        const auto status = parse_trial_status(e.data.at("status").get<std::string>());
        const auto failure = parse_failure_class(e.data.at("failure").get<std::string>());
        if (!status || !failure) throw std::invalid_argument("unknown status or failure");
        TrialOutcome& o = r.outcome;
        o.status = *status;
        o.failure = *failure;
        o.reason = e.data.at("reason").get<std::string>();
        o.metrics = metrics_from_json(e.data.at("metrics"));
        o.counted = e.data.at("counted").get<std::vector<double>>();
        o.stopped_early = e.data.at("stopped_early").get<bool>();
        o.wall_s = e.data.at("wall_s").get<double>();
        o.startup_s = optional_number(e.data, "startup_s");
        o.host_peak_rss_gib = optional_number(e.data, "host_peak_rss_gib");
      }
      out.push_back(std::move(r));
    } catch (const std::exception& x) {
      throw StoreError(store.path() + ": event " + std::to_string(e.id) + " (" + e.kind + ") of study '" + study +
                       "' cannot be read: " + x.what());
    }
  }
  return out;
}

}  // namespace partune
