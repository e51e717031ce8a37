// `tune report` as a user meets it: the HTML of a real study opened in
// headless Chromium, with no console message and no fetch, every plotted
// trial checked against the database, and a screenshot that shows something.
// With PARTUNE_REPORT_EXAMPLE_DIR set, the night study's report and its
// screenshot are copied there (docs/report-example.html and .png come from it).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>

#include "browser.h"
#include "night_study.h"

namespace partune::cli_testing {
namespace {

std::set<std::string> ids_in(const std::string& svg) {
  std::set<std::string> ids;
  static const std::regex re("data-trial=\"([0-9a-f]+)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    ids.insert((*it)[1]);
  return ids;
}

std::set<std::string> ids_of(const std::string& db, const std::string& sql) {
  std::set<std::string> ids;
  for (const auto& row : query(db, sql)) ids.insert(row[0]);
  return ids;
}

void require_chromium() {
  ASSERT_FALSE(kChromium.empty() || !std::filesystem::exists(kChromium))
      << "headless Chromium is not installed (Debian package 'chromium'; scripts/bootstrap installs it)";
}

// The HTML carries everything itself: no script, no external reference.
void expect_self_contained(const std::string& html) {
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find(" src="), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  std::string rest = html;
  for (size_t at; (at = rest.find("http://www.w3.org/2000/svg")) != std::string::npos;) rest.erase(at, 26);
  EXPECT_EQ(rest.find("http://"), std::string::npos);
  EXPECT_EQ(rest.find("https://"), std::string::npos);
}

// Chromium's detection works: a page that logs an error and fetches from the
// network is caught, or the clean result below would mean nothing.
TEST(Browser, ReportsAPagesConsoleErrorsAndFetches) {
  require_chromium();
  TempDir dir;
  write_file(dir.file("bad.html"),
             "<html><body><img src=\"http://partune.invalid/x.png\"><script>console.error('broken "
             "page')</script></body></html>");
  const Page page = load_page(dir.file("bad.html"), dir.file("chromium"));
  EXPECT_EQ(page.exit_code, 0) << page.log;
  ASSERT_GE(page.console.size(), 1u) << page.log;
  bool saw_error = false;
  for (const auto& line : page.console) saw_error = saw_error || line.find("broken page") != std::string::npos;
  EXPECT_TRUE(saw_error) << page.log;
}

TEST(Report, NightStudyLoadsInChromiumAndPlotsEveryTrialOfTheDatabase) {
  require_chromium();
  TempDir dir;
  const Study s = run_night_study(dir);
  const std::string html_path = dir.file("report.html");
  Result made = tune({"report", "--space", s.space, "-o", html_path}, dir.path());
  ASSERT_EQ(made.exit_code, 0) << made.describe();
  const std::string html = read_file(html_path);
  expect_self_contained(html);

  const Page page = load_page(html_path, dir.file("chromium"));
  ASSERT_EQ(page.exit_code, 0) << page.log;
  EXPECT_TRUE(page.console.empty()) << page.console.front();
  ASSERT_NE(page.dom.find("partune report: study night"), std::string::npos) << page.dom.substr(0, 2000);

  // The trade-off chart: exactly the trials that ran and have a memory figure
  // (measured, or predicted for those that died before their first step).
  const std::string chart = element_by_id(page.dom, "svg", "mfu-memory");
  ASSERT_FALSE(chart.empty());
  const std::set<std::string> ran =
      ids_of(s.db,
             "SELECT id FROM trials WHERE study = 'night' AND (status IN ('done', 'failed') OR (status = 'pruned' AND "
             "attempt > 0)) AND (memory_gib IS NOT NULL OR facts_json ->> '$.prediction.memory_gib' IS NOT NULL)");
  EXPECT_EQ(ids_in(chart), ran);
  EXPECT_GE(ran.size(), 10u);
  // Coloured by outcome: the healthy ones are the view's, and each kind is there.
  EXPECT_EQ(count_of(chart, "class=\"pt healthy\""),
            std::stoul(scalar(s.db, "SELECT count(*) FROM healthy_trials WHERE study = 'night'")));
  EXPECT_EQ(count_of(chart, "class=\"pt oom\""),
            std::stoul(scalar(s.db, "SELECT count(*) FROM trials WHERE study = 'night' AND failure = 'oom'")));
  for (const char* cls : {"healthy", "over-headroom", "retries", "oom", "failed"})
    EXPECT_GE(count_of(chart, std::string("class=\"pt ") + cls + "\""), 1u) << cls;
  for (const char* text : {"peak reserved memory per device (GiB)", "MFU (%)", "headroom 85%", "Pareto front"})
    EXPECT_NE(chart.find(text), std::string::npos) << text;

  // The healthy_trials view and `tune list` agree on this real study.
  std::set<std::string> healthy_by_tune;
  for (const auto& t : json_of(tune({"list", "--db", s.db, "--format", "json"}, dir.path())))
    if (t["healthy"] == true) healthy_by_tune.insert(t["id"]);
  EXPECT_EQ(ids_of(s.db, "SELECT id FROM healthy_trials WHERE study = 'night'"), healthy_by_tune);

  // The summary's best is `tune best`'s.
  const auto best = json_of(tune({"best", "--space", s.space, "--format", "json", "--top", "1"}, dir.path()));
  ASSERT_EQ(best.size(), 1u);
  EXPECT_NE(page.dom.find("id=\"best\" data-trial=\"" + best[0]["id"].get<std::string>() + "\""), std::string::npos);
  EXPECT_NE(page.dom.find("# trial: " + best[0]["id"].get<std::string>()), std::string::npos);  // its exported TOML

  // Over time: one mark per healthy finish. Predicted memory: every measured trial the study predicted.
  EXPECT_EQ(ids_in(element_by_id(page.dom, "svg", "best-over-time")), healthy_by_tune);
  EXPECT_EQ(ids_in(element_by_id(page.dom, "svg", "predicted-memory")),
            ids_of(s.db,
                   "SELECT id FROM trials WHERE study = 'night' AND memory_gib IS NOT NULL AND "
                   "facts_json ->> '$.prediction.memory_gib' IS NOT NULL"));
  for (const char* axis : {"effect-TP", "effect-EP", "effect-lbs", "effect-seq", "effect-ac"})
    EXPECT_FALSE(ids_in(element_by_id(page.dom, "svg", axis)).empty()) << axis;

  // Every pruned or failed trial and every rejected point is listed with its
  // reason, at most 50 per group; the rest of a group is counted.
  const size_t missing_at = page.dom.find("<section id=\"missing\">");
  ASSERT_NE(missing_at, std::string::npos);
  const std::string missing = page.dom.substr(missing_at);
  const std::set<std::string> by_model =
      ids_of(s.db,
             "SELECT id FROM trials WHERE study = 'night' AND status = 'pruned' AND (pruned_by IS NULL OR pruned_by = "
             "'') AND attempt = 0 AND reason LIKE 'predicted%'");
  size_t listed_by_model = 0;
  for (const auto& id :
       ids_of(s.db, "SELECT id FROM trials WHERE study = 'night' AND status IN ('pruned', 'failed')")) {
    const bool listed = missing.find("<td>" + id + "</td>") != std::string::npos;
    if (by_model.count(id)) {
      listed_by_model += listed;
    } else {
      EXPECT_TRUE(listed) << id;
    }
  }
  EXPECT_EQ(listed_by_model, std::min<size_t>(50, by_model.size()));
  if (by_model.size() > 50) {
    EXPECT_NE(missing.find("... and " + std::to_string(by_model.size() - 50) + " more (tune list)."),
              std::string::npos);
  }
  EXPECT_NE(missing.find("rejected by the planner: dp_shard_resolve \xe2\x80\x94 36"), std::string::npos);
  EXPECT_EQ(count_of(missing, "does not divide world size 2"), 36u);

  // The screenshot: the size asked for, and drawn on.
  const std::string png_path = dir.file("report.png");
  std::string log;
  ASSERT_TRUE(screenshot(html_path, png_path, 1100, 3000, dir.file("chromium-shot"), &log)) << log;
  const Image img = read_png(png_path);
  EXPECT_EQ(img.width, 1100);
  EXPECT_EQ(img.height, 3000);
  EXPECT_GT(img.non_white, 0.04) << "mostly blank";
  EXPECT_GT(img.colours, 30u) << "too few colours for charts in colour";

  if (const char* out = std::getenv("PARTUNE_REPORT_EXAMPLE_DIR")) {
    // docs/report-example.html: the same study where its paths read as a
    // user's (search_spaces/night.toml, results/night.db, relative to the
    // folder tune runs in), not this test's temporary folder.
    TempDir ex;
    std::filesystem::create_directories(ex.path() / "search_spaces");
    std::string text = read_file(s.space);
    const std::string db_line = "db = \"" + s.db + "\"";
    ASSERT_NE(text.find(db_line), std::string::npos) << text;
    text.replace(text.find(db_line), db_line.size(), "db = \"results/night.db\"");
    write_file(ex.file("search_spaces/night.toml"), text);
    Result run = tune({"--space", "search_spaces/night.toml", "--plain"}, ex.path(), 120);
    ASSERT_EQ(run.exit_code, 0) << run.describe();
    const std::string example = std::string(out) + "/report-example.html";
    Result report = tune({"report", "--space", "search_spaces/night.toml", "-o", example}, ex.path());
    ASSERT_EQ(report.exit_code, 0) << report.describe();
    EXPECT_EQ(read_file(example).find(ex.path().string()), std::string::npos) << "a temporary path in the example";
    ASSERT_TRUE(
        screenshot(example, std::string(out) + "/report-example.png", 1100, 3000, ex.file("chromium-shot"), &log))
        << log;
  }
}

// The shipped CPU smoke space on the embedded trainer: a few of its trials,
// then the report, in the browser.
TEST(Report, CpuSmokeStudyWithTheEmbeddedTrainer) {
  require_chromium();
  const std::string trainer = TRAINER_BIN;
  if (trainer.empty() || !std::filesystem::exists(trainer))
    GTEST_SKIP() << "no embedded trainer in this build (PARTUNE_TRAINER=OFF; set -DPARTUNE_TEST_TRAINER=PATH)";
  TempDir dir;
  std::string space = read_file(std::string(PARTUNE_SOURCE_DIR) + "/search_spaces/cpu_smoke.toml");
  const std::string db = dir.file("cpu_smoke.db");
  space.replace(space.find("[study]\n"), 8, "[study]\ndb = \"" + db + "\"\n");
  space.replace(space.find("[backend]\n"), 10, "[backend]\ntrainer = \"" + trainer + "\"\n");
  write_file(dir.file("cpu_smoke.toml"), space);
  // Three of its twelve trials keep the test near half a minute on two cores.
  Result run = tune({"--space", dir.file("cpu_smoke.toml"), "--max-trials", "3", "--plain"}, dir.path(), 400);
  ASSERT_EQ(run.exit_code, 0) << run.describe();
  Result made = tune({"report", "--space", dir.file("cpu_smoke.toml"), "-o", dir.file("smoke.html")}, dir.path());
  ASSERT_EQ(made.exit_code, 0) << made.describe();
  expect_self_contained(read_file(dir.file("smoke.html")));
  const Page page = load_page(dir.file("smoke.html"), dir.file("chromium"));
  ASSERT_EQ(page.exit_code, 0) << page.log;
  EXPECT_TRUE(page.console.empty()) << page.console.front();
  const std::string chart = element_by_id(page.dom, "svg", "mfu-memory");
  EXPECT_EQ(ids_in(chart), ids_of(db, "SELECT id FROM trials WHERE status = 'done' AND memory_gib IS NOT NULL"));
  EXPECT_EQ(ids_in(chart).size(), 3u);
  EXPECT_NE(chart.find("throughput (tokens/s per device)"), std::string::npos);
  EXPECT_NE(page.dom.find("Best healthy config: "), std::string::npos);
}

// The guided search confirms its best by running it again: the summary's
// top-k table shows the runs, their mean and their spread.
TEST(Report, RepeatedRunsShowTheirMeanAndSpread) {
  TempDir dir;
  SpaceOptions o;
  o.name = "guided";
  o.objective = "mfu";
  o.hardware = "device_type = \"cpu\"\ndevices = 2\n";
  o.base = "[base.metrics]\nlog_freq = 1\n";
  o.axes = "\"parallelism.tensor_parallel_degree\" = [1, 2]\n\"training.local_batch_size\" = [1, 2, 4]\n";
  o.search = "strategy = \"guided\"\n";
  const Study s = write_space(dir, o);
  ASSERT_EQ(tune({"--space", s.space, "--plain"}, dir.path(), 120).exit_code, 0);
  const auto repeated = query(s.db,
                              "SELECT id, json_array_length(facts_json, '$.search.runs'), facts_json ->> "
                              "'$.search.mean', facts_json ->> '$.search.spread' FROM trials WHERE "
                              "json_array_length(facts_json, '$.search.runs') >= 2");
  ASSERT_FALSE(repeated.empty()) << "the guided search confirmed nothing";
  Result made = tune({"report", "--space", s.space, "-o", dir.file("g.html")}, dir.path());
  ASSERT_EQ(made.exit_code, 0) << made.describe();
  const std::string html = read_file(dir.file("g.html"));
  const std::string summary = html.substr(0, html.find("<section id=\"memory\">"));
  for (const auto& r : repeated) {
    const size_t at = summary.find("<td>" + r[0] + "</td>");
    ASSERT_NE(at, std::string::npos) << r[0] << " is not in the top-k table";
    const std::string row = summary.substr(at, summary.find("</tr>", at) - at);
    char mean[32], spread[32];
    std::snprintf(mean, sizeof mean, "%.2f%%", std::stod(r[2]));
    std::snprintf(spread, sizeof spread, "%.1f%%", 100 * std::stod(r[3]));
    EXPECT_NE(row.find("<td class=\"num\">" + r[1] + "</td><td class=\"num\">" + mean + "</td><td class=\"num\">" +
                       spread + "</td>"),
              std::string::npos)
        << row;
  }
}

TEST(Report, BadInputIsExitTwoNamingIt) {
  TempDir dir;
  Result missing = tune({"report", "--db", dir.file("none.db")}, dir.path());
  EXPECT_EQ(missing.exit_code, 2) << missing.describe();
  EXPECT_NE(missing.err.find(dir.file("none.db") + ": no results database here"), std::string::npos) << missing.err;
  const Study s = write_night_study(dir);
  // The night's first trial runs out of memory by design, and a run in which
  // every launched trial failed exits 4.
  ASSERT_EQ(tune({"--space", s.space, "--max-trials", "1"}, dir.path(), 60).exit_code, 4);
  Result unwritable = tune({"report", "--space", s.space, "-o", dir.file("no/such/folder/r.html")}, dir.path());
  EXPECT_EQ(unwritable.exit_code, 2) << unwritable.describe();
  EXPECT_NE(unwritable.err.find("no/such/folder/r.html: cannot write"), std::string::npos) << unwritable.err;
  // The default path: beside the database.
  Result beside = tune({"report", "--space", s.space}, dir.path());
  EXPECT_EQ(beside.exit_code, 0) << beside.describe();
  EXPECT_TRUE(std::filesystem::exists(dir.file("night-report.html")));
}

}  // namespace
}  // namespace partune::cli_testing
