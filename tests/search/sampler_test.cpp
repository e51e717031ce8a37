// Samplers through ask/tell against the real Study (a SQLite store in a temp
// folder): grid and random keep their orders while trials are outstanding;
// guided probes every layout first, sets aside a layout that hangs at its
// smallest batch, stops clearly worse trials early, confirms its top results,
// and depends on neither the order of axis values nor anything but its seed;
// the study loop honours the time budget and max_trials, and resumes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "sim_study.h"
#include "tuner/search/guided_sampler.h"
#include "tuner/search/strategy.h"
#include "tuner/search/throughput_model.h"

namespace partune {
namespace {

namespace fs = std::filesystem;
using sim::run_sim;
using sim::SimOptions;
using sim::SimRun;

class Sampling : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("partune-sampler-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string dir(const std::string& name) const {
    fs::create_directories(root_ / name);
    return (root_ / name).string();
  }
  fs::path root_;
};

// A four-candidate study on the command backend (no device memory known:
// everything fits), its Study over a real store.
struct SmallStudy {
  Space space;
  PlanResult planned;
  Store store;
  sim::SimExecutor executor;
  std::unique_ptr<Study> study;
  SmallStudy(const std::string& dir, const std::string& strategy)
      : space(load_space_from_string(R"([study]
name = "small"
objective = "mfu"
[hardware]
devices = 8
[backend]
kind = "command"
argv = ["prog", "{config_file}"]
[base.model]
name = "qwen3"
flavor = "30B-A3B"
[space]
"training.local_batch_size" = [2, 4]
"activation_checkpoint.mode" = ["none", "full"]
[search]
strategy = ")" + strategy + "\"\n",
                                     dir + "/small.toml")),
        planned(plan(space)),
        store(Store::open(dir + "/small.db")),
        executor(1, space.trial) {
    store.ensure_study({"small", "", "", "mfu", "", nlohmann::json::object(), HealthRule{}});
    store.add_candidates("small", planned.candidates);
    study = std::make_unique<Study>(
        space, planned.candidates, store, std::make_unique<sim::SimMemoryModel>(), [this] { return executor.now_s(); },
        std::nullopt);
  }
  TrialReport run(const TrialRequest& r) {
    study->mark_running(r.index, "");
    auto o = executor.run(study->candidate(r.index), r, [](const std::vector<double>&) { return std::nullopt; });
    return study->finish(r.index, r, o).report;
  }
};

TEST_F(Sampling, GridKeepsAnsweringWhileTrialsAreOutstandingThenWaitsThenFinishes) {
  SmallStudy s(dir("s"), "grid");
  auto sampler = make_sampler(s.space.search);
  std::vector<TrialRequest> asked;
  for (int k = 0; k < 4; ++k) {
    Ask a = sampler->ask(*s.study);
    ASSERT_EQ(a.kind, Ask::Kind::Trial) << k;
    EXPECT_EQ(a.request.fidelity, Fidelity::Full);
    EXPECT_EQ(a.request.steps, s.space.trial.steps);
    asked.push_back(a.request);
  }
  for (size_t k = 0; k < asked.size(); ++k) EXPECT_EQ(asked[k].index, k);  // the plan's order
  EXPECT_EQ(sampler->ask(*s.study).kind, Ask::Kind::Wait);                 // all four are running
  sampler->tell(*s.study, s.run(asked[0]));
  EXPECT_EQ(sampler->ask(*s.study).kind, Ask::Kind::Wait);  // three still out, nothing new
  for (size_t k = 1; k < asked.size(); ++k) sampler->tell(*s.study, s.run(asked[k]));
  EXPECT_EQ(sampler->ask(*s.study).kind, Ask::Kind::Finished);
}

TEST_F(Sampling, RandomAsksInItsStrategysOrder) {
  SmallStudy s(dir("s"), "random");
  s.space.search.seed = 11;
  auto sampler = make_sampler(s.space.search);
  const auto order = make_strategy(s.space.search)->order(s.planned.candidates);
  for (size_t k = 0; k < order.size(); ++k) {
    Ask a = sampler->ask(*s.study);
    ASSERT_EQ(a.kind, Ask::Kind::Trial);
    EXPECT_EQ(a.request.index, order[k]);
  }
}

// Parallel trial slots: guided hands out different trials while earlier ones
// run, says Wait (not Finished) when it needs their results, and goes on
// after them.
TEST_F(Sampling, GuidedKeepsAnsweringWhileTrialsAreOutstanding) {
  const Space space = sim::sim_space(PARTUNE_SOURCE_DIR, dir("g") + "/sim.db", "guided", 1);
  const PlanResult planned = plan(space);
  Store store = Store::open(space.study.db_path);
  store.ensure_study({space.study.name, "", "", "mfu", "", nlohmann::json::object(), HealthRule{}});
  store.add_candidates(space.study.name, planned.candidates);
  sim::SimExecutor executor(1, space.trial);
  Study study(
      space, planned.candidates, store, std::make_unique<sim::SimMemoryModel>(), [&] { return executor.now_s(); },
      std::nullopt);
  auto sampler = make_sampler(space.search);
  std::vector<TrialRequest> out;
  std::set<size_t> distinct;
  while (true) {
    Ask a = sampler->ask(study);
    if (a.kind != Ask::Kind::Trial) {
      EXPECT_EQ(a.kind, Ask::Kind::Wait) << a.why;
      break;
    }
    out.push_back(a.request);
    distinct.insert(a.request.index);
    ASSERT_LT(out.size(), planned.candidates.size()) << "never waits";
  }
  EXPECT_EQ(distinct.size(), out.size());  // no candidate handed out twice
  EXPECT_EQ(out.size(), 15u);              // every layout's probe, then it waits for a result
  for (const auto& r : out) EXPECT_EQ(r.fidelity, Fidelity::Short);
  for (const auto& r : out) {
    study.mark_running(r.index, "");
    sampler->tell(study, study.finish(r.index, r, executor.run(study.candidate(r.index), r, {})).report);
  }
  EXPECT_EQ(sampler->ask(study).kind, Ask::Kind::Trial);  // results in: it goes on
}

TEST_F(Sampling, GuidedProbesEveryLayoutFirstAtItsSmallestBatchAndSequence) {
  const SimRun r = run_sim(PARTUNE_SOURCE_DIR, dir("g"), "guided", 3, {std::nullopt, 15, std::nullopt});
  const Space space = sim::sim_space(PARTUNE_SOURCE_DIR, dir("x") + "/x.db", "guided", 3);
  const PlanResult planned = plan(space);
  std::map<std::string, const Candidate*> by_id;
  std::map<std::string, std::pair<int64_t, int64_t>> smallest;  // layout -> min (lbs, seq)
  std::set<std::string> layouts;
  for (const auto& c : planned.candidates) {
    by_id[c.id] = &c;
    const std::string l = layout_key(c);
    layouts.insert(l);
    const auto bs = std::make_pair(c.config.get_int("training.local_batch_size"), c.config.get_int("training.seq_len"));
    if (!smallest.count(l) || bs < smallest[l]) smallest[l] = bs;
  }
  ASSERT_EQ(layouts.size(), 15u);
  ASSERT_EQ(r.asked.size(), 15u);
  std::set<std::string> probed;
  for (const auto& [id, req] : r.asked) {
    const Candidate& c = *by_id.at(id);
    EXPECT_EQ(req.fidelity, Fidelity::Short);
    EXPECT_EQ(req.steps, space.trial.warmup_steps + 3);
    EXPECT_EQ(std::make_pair(c.config.get_int("training.local_batch_size"), c.config.get_int("training.seq_len")),
              smallest.at(layout_key(c)));
    probed.insert(layout_key(c));
  }
  EXPECT_EQ(probed, layouts);
}

TEST_F(Sampling, GuidedSetsAsideALayoutThatHangsAtItsSmallestBatch) {
  const SimRun r = run_sim(PARTUNE_SOURCE_DIR, dir("g"), "guided", 2);
  EXPECT_EQ(r.counts.hang, 1);
  const auto note = std::find_if(r.notes.begin(), r.notes.end(), [](const std::string& n) {
    return n.find("set aside: hang at its smallest batch and sequence") != std::string::npos;
  });
  ASSERT_NE(note, r.notes.end());
  EXPECT_NE(note->find("parallelism.expert_parallel_degree=8"), std::string::npos) << *note;
  EXPECT_NE(note->find("parallelism.tensor_parallel_degree=2"), std::string::npos) << *note;
}

TEST_F(Sampling, GuidedPromotesShortResultsAndConfirmsItsContenders) {
  const SimRun r = run_sim(PARTUNE_SOURCE_DIR, dir("g"), "guided", 4);
  std::map<Fidelity, int> by_fidelity;
  std::set<std::string> shorts, fulls;
  for (const auto& [id, req] : r.asked) {
    ++by_fidelity[req.fidelity];
    if (req.fidelity == Fidelity::Short) shorts.insert(id);
    if (req.fidelity == Fidelity::Full) {
      EXPECT_TRUE(shorts.count(id)) << "promoted without a short run: " << id;
      fulls.insert(id);
    }
    if (req.fidelity == Fidelity::Confirm) {
      EXPECT_TRUE(fulls.count(id)) << "confirmed without a full run: " << id;
    }
  }
  EXPECT_GT(by_fidelity[Fidelity::Short], by_fidelity[Fidelity::Full]);  // most stay short
  EXPECT_GT(by_fidelity[Fidelity::Full], 0);
  // Up to 3 contenders (full results within 6% of the best) are confirmed, last.
  const int confirms = by_fidelity[Fidelity::Confirm];
  EXPECT_GE(confirms, 1);
  EXPECT_LE(confirms, 3);
  for (size_t k = r.asked.size() - static_cast<size_t>(confirms); k < r.asked.size(); ++k)
    EXPECT_EQ(r.asked[k].second.fidelity, Fidelity::Confirm);
  Store store = Store::open(dir("g") + "/sim.db", Store::Mode::Existing);
  int with_two_runs = 0;
  for (const auto& t : store.trials("sim_guided_4"))
    with_two_runs += t.facts.contains("search") && t.facts["search"]["runs"].size() >= 2;
  EXPECT_EQ(with_two_runs, confirms);
  auto best = store.trial("sim_guided_4", r.best_id);
  ASSERT_TRUE(best);
  const auto& search = best->facts.at("search");
  EXPECT_EQ(search.at("runs").size(), 2u);
  EXPECT_TRUE(search.at("spread").is_number());
  EXPECT_NEAR(search.at("mean").get<double>(), *best->metrics.mfu, 1e-9);
  ASSERT_TRUE(best->startup_s);  // the executor's start-up, stored per trial
  EXPECT_DOUBLE_EQ(*best->startup_s, sim::kStartupS);
}

TEST_F(Sampling, GuidedIsDeterministicUnderItsSeedAndIndependentOfAxisValueOrder) {
  auto ids = [](const SimRun& r) {
    std::vector<std::string> out;
    for (const auto& [id, req] : r.asked) out.push_back(id + ":" + std::string(to_string(req.fidelity)));
    return out;
  };
  // Same seed (search and simulated noise), axis values in two different orders.
  const SimRun a = run_sim(PARTUNE_SOURCE_DIR, dir("a"), "guided", 5, {std::nullopt, std::nullopt, 100});
  const SimRun b = run_sim(PARTUNE_SOURCE_DIR, dir("b"), "guided", 5, {std::nullopt, std::nullopt, 200});
  const SimRun c = run_sim(PARTUNE_SOURCE_DIR, dir("c"), "guided", 5, {std::nullopt, std::nullopt, 100});
  EXPECT_EQ(ids(a), ids(c));
  EXPECT_EQ(ids(a), ids(b));
  EXPECT_EQ(a.best_id, b.best_id);
  const SimRun other = run_sim(PARTUNE_SOURCE_DIR, dir("o"), "guided", 6, {std::nullopt, std::nullopt, 100});
  EXPECT_NE(ids(a), ids(other));  // another seed probes the layouts in another order
}

TEST_F(Sampling, GuidedStopsATrialEarlyOnlyWhenItsStepsAreClearlyBelowTheBest) {
  SmallStudy s(dir("s"), "guided");
  GuidedSampler g(GuidedOptions{});
  // A full result of 30 with 1% step noise is the incumbent.
  TrialReport best;
  best.request.index = 0;
  best.request.fidelity = Fidelity::Full;
  best.status = TrialStatus::Done;
  best.healthy = true;
  best.value = 30.0;
  best.counted = {29.7, 30.3, 30.0, 29.8, 30.2};
  g.tell(*s.study, best);
  TrialRequest full;
  full.index = 1;
  full.fidelity = Fidelity::Full;
  const auto stop = g.should_stop(full, {24.0, 24.3, 23.9});
  ASSERT_TRUE(stop);
  EXPECT_NE(stop->find("clearly below the best 30"), std::string::npos) << *stop;
  EXPECT_FALSE(g.should_stop(full, {24.0, 24.3}));              // too few steps to judge
  EXPECT_FALSE(g.should_stop(full, {29.0, 29.6, 29.3}));        // within the noise of the best
  EXPECT_FALSE(g.should_stop(full, {18.0, 40.0, 16.0, 38.0}));  // its own noise is too large to tell
  TrialRequest confirm = full;
  confirm.fidelity = Fidelity::Confirm;
  EXPECT_FALSE(g.should_stop(confirm, {24.0, 24.3, 23.9}));  // confirmations always run in full
}

TEST_F(Sampling, TheTimeBudgetEndsTheStudyAndTheNextRunResumesIt) {
  const std::string d = dir("g");
  const SimRun first = run_sim(PARTUNE_SOURCE_DIR, d, "guided", 1, {5000.0, std::nullopt, std::nullopt});
  EXPECT_TRUE(first.drive.stopped_by_budget);
  EXPECT_NE(first.drive.end.find("run the same command again to resume"), std::string::npos);
  // No trial starts after the budget: the last one started before it.
  ASSERT_GE(first.drive.curve.size(), 2u);
  EXPECT_LT(first.drive.curve[first.drive.curve.size() - 2].time_s, 5000.0);
  const SimRun second = run_sim(PARTUNE_SOURCE_DIR, d, "guided", 1);
  EXPECT_FALSE(second.drive.stopped_by_budget);
  // What the first run measured short is not measured short again.
  std::set<std::string> short_first;
  for (const auto& [id, req] : first.asked)
    if (req.fidelity == Fidelity::Short) short_first.insert(id);
  for (const auto& [id, req] : second.asked)
    if (req.fidelity == Fidelity::Short) {
      EXPECT_FALSE(short_first.count(id)) << id;
    }
  EXPECT_GE(second.final_ratio, 0.99);
}

TEST_F(Sampling, RunningAFinishedGuidedStudyAgainRunsNothingTwice) {
  const std::string d = dir("g");
  const SimRun first = run_sim(PARTUNE_SOURCE_DIR, d, "guided", 3);
  const SimRun again = run_sim(PARTUNE_SOURCE_DIR, d, "guided", 3);
  std::set<std::string> full;
  for (const auto& [id, req] : first.asked)
    if (req.fidelity != Fidelity::Short) full.insert(id);
  for (const auto& [id, req] : again.asked) {
    EXPECT_FALSE(full.count(id)) << id << " " << to_string(req.fidelity);
  }
  // Resumed, the sampler may try a few candidates it had not (its model is
  // refitted on every result), but a finished study stays nearly finished.
  EXPECT_LE(again.counts.launched, first.counts.launched / 5) << again.drive.end;
  EXPECT_EQ(again.best_id, first.best_id);
}

TEST_F(Sampling, MaxTrialsCountsTheLaunchesOfThisRun) {
  const std::string d = dir("g");
  const SimRun first = run_sim(PARTUNE_SOURCE_DIR, d, "grid", 1, {std::nullopt, 4, std::nullopt});
  EXPECT_EQ(first.counts.launched, 4);
  EXPECT_TRUE(first.drive.stopped_by_max_trials);
  const SimRun second = run_sim(PARTUNE_SOURCE_DIR, d, "grid", 1, {std::nullopt, 4, std::nullopt});
  EXPECT_EQ(second.counts.launched, 4);  // 4 more, not 0
  std::set<std::string> ids;
  for (const auto& [id, req] : first.asked) ids.insert(id);
  for (const auto& [id, req] : second.asked) EXPECT_TRUE(ids.insert(id).second) << "rerun: " << id;
}

TEST_F(Sampling, CandidatesPredictedNotToFitArePrunedBeforeLaunchWithTheModelsReason) {
  const std::string d = dir("g");
  const SimRun r = run_sim(PARTUNE_SOURCE_DIR, d, "grid", 1);
  EXPECT_GT(r.drive.pruned_before_launch, 0);
  Store store = Store::open(d + "/sim.db", Store::Mode::Existing);
  int64_t predicted = 0;
  for (const auto& t : store.trials("sim_grid_1"))
    if (t.status == TrialStatus::Pruned && t.reason.rfind("predicted ", 0) == 0) {
      ++predicted;
      EXPECT_NE(t.reason.find("% of 139.8 GiB"), std::string::npos) << t.reason;
      EXPECT_EQ(t.attempt, 0);  // never launched
    }
  EXPECT_EQ(predicted, r.drive.pruned_before_launch);
}

// A view whose statuses and memory fits the test sets, as a study's change
// when a recalibration un-prunes a candidate.
struct SetView : StudyView {
  std::vector<Candidate> cands;
  std::vector<TrialStatus> st;
  std::vector<bool> fits;
  TrialSpec spec;
  SetView(std::vector<Candidate> c, TrialSpec t)
      : cands(std::move(c)), st(cands.size(), TrialStatus::Pending), fits(cands.size(), true), spec(t) {}
  size_t size() const override { return cands.size(); }
  const Candidate& candidate(size_t i) const override { return cands[i]; }
  TrialStatus status(size_t i) const override { return st[i]; }
  MemoryPrediction prediction(size_t) const override { return {}; }
  double fit_probability(size_t i) const override { return fits[i] ? 1.0 : 0.0; }
  bool predicted_to_fit(size_t i) const override { return fits[i]; }
  double elapsed_s() const override { return 0; }
  std::optional<double> remaining_s() const override { return std::nullopt; }
  const TrialSpec& trial_spec() const override { return spec; }
};

TrialReport report_of(const TrialRequest& r, TrialStatus status, double value = 0) {
  TrialReport rep;
  rep.request = r;
  rep.status = status;
  if (status == TrialStatus::Done) {
    rep.value = value;
    rep.healthy = true;
    rep.metrics.mfu = value;
  }
  return rep;
}

// Runs the sampler to its end on `v` (every asked trial done, its value
// from `value`); returns the candidates asked, in order.
std::vector<size_t> run_to_end(Sampler& sampler, SetView& v, const std::function<double(size_t)>& value) {
  std::vector<size_t> asked;
  for (int guard = 0; guard < 200; ++guard) {
    const Ask a = sampler.ask(v);
    if (a.kind != Ask::Kind::Trial) break;
    asked.push_back(a.request.index);
    v.st[a.request.index] = TrialStatus::Done;
    sampler.tell(v, report_of(a.request, TrialStatus::Done, value(a.request.index)));
  }
  return asked;
}

// The loop prunes the first candidate asked (predicted not to fit); the
// next trial's result recalibrates the model, the candidate is pending
// again and the sampler is told restore(): it runs it.
TEST_F(Sampling, GridAndRandomRunACandidateRestoredAfterItWasPruned) {
  for (const std::string strategy : {"grid", "random"}) {
    SmallStudy s(dir(strategy), strategy);
    s.space.search.seed = 5;
    SetView v(s.planned.candidates, s.space.trial);
    auto sampler = make_sampler(s.space.search);
    const Ask first = sampler->ask(v);
    ASSERT_EQ(first.kind, Ask::Kind::Trial);
    const size_t pruned = first.request.index;
    v.st[pruned] = TrialStatus::Pruned;
    sampler->tell(v, report_of(first.request, TrialStatus::Pruned));
    const Ask second = sampler->ask(v);
    ASSERT_EQ(second.kind, Ask::Kind::Trial);
    v.st[second.request.index] = TrialStatus::Done;
    v.st[pruned] = TrialStatus::Pending;
    sampler->restore(v, pruned);
    sampler->tell(v, report_of(second.request, TrialStatus::Done, 30));
    const Ask third = sampler->ask(v);
    ASSERT_EQ(third.kind, Ask::Kind::Trial) << strategy;
    EXPECT_EQ(third.request.index, pruned) << strategy << ": the restored candidate runs next, at its place";
    v.st[pruned] = TrialStatus::Done;
    sampler->tell(v, report_of(third.request, TrialStatus::Done, 30));
    const auto rest = run_to_end(*sampler, v, [](size_t) { return 30.0; });
    EXPECT_EQ(rest.size(), 2u) << strategy;  // the two never asked
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v.st[i], TrialStatus::Done) << strategy << " " << i;
  }
}

TEST_F(Sampling, GuidedRunsACandidateRestoredAfterItWasPruned) {
  SmallStudy s(dir("g"), "guided");
  SetView v(s.planned.candidates, s.space.trial);
  auto sampler = make_sampler(s.space.search);
  // The probe is pruned by the loop; the layout's next probe runs.
  const Ask probe = sampler->ask(v);
  ASSERT_EQ(probe.kind, Ask::Kind::Trial);
  const size_t pruned = probe.request.index;
  v.st[pruned] = TrialStatus::Pruned;
  sampler->tell(v, report_of(probe.request, TrialStatus::Pruned));
  const Ask next = sampler->ask(v);
  ASSERT_EQ(next.kind, Ask::Kind::Trial);
  ASSERT_NE(next.request.index, pruned);
  // Its result brings the pruned one back; make it the one worth running.
  v.st[next.request.index] = TrialStatus::Done;
  v.st[pruned] = TrialStatus::Pending;
  sampler->restore(v, pruned);
  sampler->tell(v, report_of(next.request, TrialStatus::Done, 20));
  const auto asked = run_to_end(*sampler, v, [&](size_t i) { return i == pruned ? 40.0 : 20.0; });
  EXPECT_NE(std::find(asked.begin(), asked.end(), pruned), asked.end()) << "the restored candidate never ran";
}

// Guided sets a layout aside when none of it is predicted to fit; once a
// result (of another layout) recalibrates the model so that some of it
// does, the layout is probed.
TEST_F(Sampling, GuidedProbesALayoutSetAsideForMemoryOnceARecalibrationMakesItFit) {
  const Space space = sim::sim_space(PARTUNE_SOURCE_DIR, dir("g") + "/sim.db", "guided", 1);
  const PlanResult planned = plan(space);
  SetView v(planned.candidates, space.trial);
  auto sampler = make_sampler(space.search);
  // The first probe's layout fits; every other layout does not, yet.
  const Ask first = sampler->ask(v);
  ASSERT_EQ(first.kind, Ask::Kind::Trial);
  const std::string layout = layout_key(v.candidate(first.request.index));
  std::vector<size_t> others;
  for (size_t i = 0; i < v.size(); ++i)
    if (layout_key(v.candidate(i)) != layout) {
      v.fits[i] = false;
      others.push_back(i);
    }
  ASSERT_FALSE(others.empty());
  EXPECT_EQ(sampler->ask(v).kind, Ask::Kind::Wait);  // every other layout is set aside; the probe runs
  bool noted = false;
  for (const auto& n : sampler->take_notes()) noted = noted || n.find("set aside: no candidate") != std::string::npos;
  EXPECT_TRUE(noted);
  // Its result: now the other layouts fit.
  for (size_t i : others) v.fits[i] = true;
  v.st[first.request.index] = TrialStatus::Done;
  sampler->tell(v, report_of(first.request, TrialStatus::Done, 20));
  const Ask again = sampler->ask(v);
  ASSERT_EQ(again.kind, Ask::Kind::Trial);
  EXPECT_NE(layout_key(v.candidate(again.request.index)), layout) << again.request.why;
  EXPECT_EQ(again.request.why.rfind("probe of layout", 0), 0u) << again.request.why;
}

}  // namespace
}  // namespace partune
