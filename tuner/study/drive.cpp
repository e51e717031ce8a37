#include "tuner/study/drive.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "tuner/estimate/memory_model.h"

namespace partune {

namespace {

std::string duration(double s) {
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  return buf;
}

}  // namespace

DriveSummary drive_study(Study& study, Sampler& sampler, TrialExecutor& executor, Progress& progress,
                         const DriveOptions& options) {
  DriveSummary sum;
  auto notes = [&] {
    for (const auto& n : sampler.take_notes()) {
      progress.note("search: " + n);
      study.event("info", n);
    }
  };
  // What earlier runs (and ingested runs) measured warms the sampler up,
  // unless a replay of the study's journal told it already.
  if (!options.replayed) {
    for (const auto& r : study.history()) sampler.tell(study, r);
    notes();
  }
  std::vector<TrialRequest> restart = options.restart;
  const StudyCounts at_start = study.counts();
  const int64_t finished_before = at_start.done + at_start.failed;
  const int64_t total = static_cast<int64_t>(study.size());

  // Trials running now, by ticket: what was asked.
  std::map<size_t, TrialRequest> running;
  auto status_line = [&] {
    const StudyCounts c = study.counts();
    std::string line = "study: elapsed " + duration(executor.now_s());
    if (auto left = study.remaining_s()) line += ", budget left " + duration(*left);
    // Trials still running (several slots) are not "run" yet.
    const int64_t ended = sum.launched - static_cast<int64_t>(running.size());
    line += ", trials run " + std::to_string(ended) + " (" + std::to_string(c.done + c.failed) + " in the study)";
    if (!running.empty()) line += ", " + std::to_string(running.size()) + " running";
    line += ", pruned " + std::to_string(c.pruned) + ", predicted to fit " + std::to_string(c.predicted_to_fit) +
            " of " + std::to_string(c.pending) + " pending";
    progress.budget_left(study.remaining_s());
    progress.status(line);
  };

  size_t next_ticket = 0;
  bool launching = true;  // false once the loop ends: what runs is waited for, nothing new starts

  auto stop_launching = [&](std::string why, bool is_note) {
    launching = false;
    sum.end = std::move(why);
    if (is_note) progress.note(sum.end);
  };

  while (true) {
    // Fill the free slots (asked each time: a slot whose node died is left
    // out while it stays down).
    const size_t slots = static_cast<size_t>(std::max(0, executor.slots()));
    if (launching && slots == 0 && running.empty())
      stop_launching("no trial slot can run a trial (their nodes are down); run again once they are back", true);
    while (launching && running.size() < slots) {
      if (options.max_trials && sum.launched >= *options.max_trials) {
        sum.stopped_by_max_trials = true;
        stop_launching("max_trials (" + std::to_string(*options.max_trials) + ") reached", true);
        break;
      }
      if (options.budget_s && executor.now_s() >= *options.budget_s) {
        sum.stopped_by_budget = true;
        stop_launching(
            "time budget of " + duration(*options.budget_s) + " reached; run the same command again to resume", true);
        break;
      }
      // A launch a killed run left without a result was asked for already:
      // it starts again as it was asked, before anything new.
      const bool restarting = !restart.empty();
      Ask ask;
      if (restarting) {
        ask = Ask::trial(restart.front());
        restart.erase(restart.begin());
      } else {
        ask = sampler.ask(study);
        notes();
      }
      if (ask.kind == Ask::Kind::Finished && running.empty()) {
        progress.note("search finished: " + ask.why);
        if (sum.launched == 0 && study.counts().done + study.counts().failed > 0)
          progress.note("nothing to run: the study was finished by an earlier run (" + ask.why + ")");
        stop_launching(ask.why, false);
        break;
      }
      if (ask.kind != Ask::Kind::Trial) {
        // Nothing to start now: what finishes next may change that.
        if (running.empty()) stop_launching("the sampler waits with no trial running (" + ask.why + ")", false);
        break;
      }
      const TrialRequest& req = ask.request;
      const size_t i = req.index;
      const Candidate& c = study.candidate(i);
      // One candidate never runs twice at once (its trial folder and rows
      // are one): a sampler asking for a running one waits for it to end.
      if (study.status(i) == TrialStatus::Running) {
        if (running.empty()) stop_launching("the sampler asked for " + c.id + ", which is running", false);
        break;
      }
      if (!restarting && study.status(i) == TrialStatus::Pending && !study.predicted_to_fit(i)) {
        const std::string why = study.prune_reason(i);
        if (study.prune(i, why)) progress.pruned(c.id, why);
        ++sum.pruned_before_launch;
        TrialReport rep;
        rep.request = req;
        rep.status = TrialStatus::Pruned;
        rep.reason = why;
        sampler.tell(study, rep);
        continue;
      }
      if (req.fidelity != Fidelity::Full || !req.why.empty())
        progress.note(std::string(to_string(req.fidelity)) + " trial of " + c.id + " (" + std::to_string(req.steps) +
                      " steps)" + (req.why.empty() ? "" : ": " + req.why));
      // The ETA: what grid/random would still run, capped by max_trials (the
      // time budget caps it too, in Progress).
      int64_t remaining = sampler.remaining_trials().value_or(study.counts().predicted_to_fit);
      if (options.max_trials) remaining = std::min(remaining, *options.max_trials - sum.launched);
      progress.remaining(remaining);
      progress.trial_start(finished_before + sum.launched + 1, sampler.one_trial_per_candidate() ? total : 0, c,
                           study.attempt(i) + 1, req.steps);
      study.mark_running(i, executor.log_dir(c), req);
      const size_t ticket = next_ticket++;
      running.emplace(ticket, req);
      ++sum.launched;
      // The check reads the sampler's state: the executor calls it only while
      // this loop waits in wait_any.
      executor.start(ticket, c, req,
                     [&sampler, req](const std::vector<double>& counted) { return sampler.should_stop(req, counted); });
    }
    if (running.empty()) break;

    auto [ticket, o] = executor.wait_any();
    const auto it = running.find(ticket);
    const TrialRequest req = it->second;
    running.erase(it);
    const size_t i = req.index;
    const Candidate& c = study.candidate(i);
    sum.trial_wall_s += o.wall_s;
    if (o.stopped_early) ++sum.stopped_early;
    Study::Finished fin = study.finish(i, req, o);
    progress.trial_end(c, o.status, o.failure, o.reason, fin.report.metrics, o.wall_s);
    for (const auto& d : fin.pruned) progress.pruned(d.candidate_id, d.reason);
    // Its recalibration brought candidates pruned by prediction back: the
    // sampler takes them back before it learns the result (replay.cpp does
    // the same, in the same order).
    for (const auto& u : fin.unpruned) {
      const MemoryPrediction p = study.prediction(u.index);
      progress.note("back from pruned: " + study.candidate(u.index).id + " now predicted " +
                    (p.known ? gib_text(u.now_gib) : std::string("unknown")) + " (was " + gib_text(u.was_gib) +
                    ") after " + c.id);
      sampler.restore(study, u.index);
      ++sum.unpruned;
    }
    sampler.tell(study, fin.report);
    notes();
    const auto best = study.best();
    if (best) progress.best(study.candidate(*best).id, *study.value(*best), study.objective());
    sum.curve.push_back({executor.now_s(), best});
    status_line();
  }
  // What was left pending, and why (`tune why`).
  for (size_t i = 0; i < study.size(); ++i)
    if (study.status(i) == TrialStatus::Pending)
      if (auto why = sampler.why_not_run(study, i)) study.record_not_run(i, *why);
  return sum;
}

}  // namespace partune
