#include "browser.h"

#include <fcntl.h>
#include <png.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "cli_testing.h"

extern char** environ;

namespace partune::cli_testing {

namespace {

constexpr double kBrowserTimeoutS = 90;  // a cold start on a loaded 2-core machine takes seconds, not minutes

struct Run {
  int exit_code = -1;
  std::string out, err;
};

// Runs argv with stdout and stderr to files in `work_dir`; killed after timeout_s.
Run run_program(const std::vector<std::string>& args, const std::string& work_dir, double timeout_s) {
  const std::string out_path = work_dir + "/stdout", err_path = work_dir + "/stderr";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // its own group: a timeout ends its helpers too
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<std::string> a = args;
  std::vector<char*> argv;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  Run r;
  const int rc = posix_spawn(&pid, a[0].c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    r.err = "cannot start " + a[0] + ": " + std::strerror(rc);
    return r;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.err = "killed after " + std::to_string(timeout_s) + " s\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(-pid, SIGKILL);  // helpers (zygote, GPU process) that outlived the browser
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = read_file(out_path);
  r.err += read_file(err_path);
  return r;
}

std::vector<std::string> chromium_args(const std::string& work_dir) {
  return {
      kChromium,
      "--headless",
      "--no-sandbox",  // tests run as root in CI containers
      "--disable-gpu",
      "--disable-dev-shm-usage",  // containers often have a small /dev/shm
      "--no-first-run",
      "--disable-extensions",
      "--hide-scrollbars",
      "--user-data-dir=" + work_dir + "/profile",
      "--host-resolver-rules=MAP * ~NOTFOUND",  // nothing may be fetched: a lookup fails and the page logs it
      "--enable-logging=stderr",
      "--v=0",
  };
}

}  // namespace

Page load_page(const std::string& html_path, const std::string& work_dir) {
  std::filesystem::create_directories(work_dir);
  auto args = chromium_args(work_dir);
  args.push_back("--dump-dom");
  args.push_back("file://" + std::filesystem::absolute(html_path).string());
  const Run r = run_program(args, work_dir, kBrowserTimeoutS);
  Page p;
  p.exit_code = r.exit_code;
  p.dom = r.out;
  p.log = r.err;
  // Chromium logs each console message of the page as "...:CONSOLE(line)] "text", source: ...".
  std::istringstream lines(r.err);
  for (std::string line; std::getline(lines, line);)
    if (line.find(":CONSOLE") != std::string::npos) p.console.push_back(line);
  return p;
}

bool screenshot(const std::string& html_path, const std::string& png_path, int width, int height,
                const std::string& work_dir, std::string* log) {
  std::filesystem::create_directories(work_dir);
  auto args = chromium_args(work_dir);
  args.push_back("--window-size=" + std::to_string(width) + "," + std::to_string(height));
  args.push_back("--screenshot=" + png_path);
  args.push_back("file://" + std::filesystem::absolute(html_path).string());
  const Run r = run_program(args, work_dir, kBrowserTimeoutS);
  if (log) *log = r.err;
  return r.exit_code == 0 && std::filesystem::exists(png_path);
}

Image read_png(const std::string& path) {
  Image out;
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path.c_str())) return out;
  img.format = PNG_FORMAT_RGB;
  std::vector<unsigned char> px(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, px.data(), 0, nullptr)) return out;
  out.width = static_cast<int>(img.width);
  out.height = static_cast<int>(img.height);
  size_t non_white = 0;
  std::set<int> colours;
  for (size_t i = 0; i + 2 < px.size(); i += 3) {
    if (px[i] < 235 || px[i + 1] < 235 || px[i + 2] < 235) ++non_white;
    colours.insert((px[i] >> 4) << 8 | (px[i + 1] >> 4) << 4 | (px[i + 2] >> 4));
  }
  out.non_white = static_cast<double>(non_white) / (static_cast<double>(px.size()) / 3);
  out.colours = colours.size();
  return out;
}

std::string element_by_id(const std::string& dom, const std::string& tag, const std::string& id) {
  const size_t at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  const size_t start = dom.rfind("<" + tag, at);
  const size_t end = dom.find("</" + tag + ">", at);
  if (start == std::string::npos || end == std::string::npos) return "";
  return dom.substr(start, end - start);
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

}  // namespace partune::cli_testing
