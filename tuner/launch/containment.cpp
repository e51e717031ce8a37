#include "tuner/launch/containment.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace partune {

namespace {

using Clock = std::chrono::steady_clock;

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool write_text(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

// ---------------------------------------------------------------------------
// /proc

struct ProcEntry {
  pid_t pid = 0, ppid = 0;
  char state = '?';
  unsigned long long start = 0;  // clock ticks after boot: with the pid, names one process for good
};

std::optional<ProcEntry> read_stat(pid_t pid) {
  std::string s = read_text("/proc/" + std::to_string(pid) + "/stat");
  // The command name in parentheses may hold anything, ')' included.
  size_t paren = s.rfind(')');
  if (paren == std::string::npos || paren + 2 >= s.size()) return std::nullopt;
  std::istringstream rest(s.substr(paren + 2));
  ProcEntry e;
  e.pid = pid;
  std::string skip;
  rest >> e.state >> e.ppid;
  for (int field = 5; field < 22 && rest; ++field) rest >> skip;  // pgrp .. itrealvalue
  rest >> e.start;
  if (!rest) return std::nullopt;
  return e;
}

std::vector<ProcEntry> walk_proc() {
  std::vector<ProcEntry> out;
  DIR* dir = ::opendir("/proc");
  if (!dir) return out;
  while (dirent* ent = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(ent->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (auto e = read_stat(static_cast<pid_t>(pid))) out.push_back(*e);
  }
  ::closedir(dir);
  return out;
}

// Starting, tracking and sweeping are serialised process-wide: a sweep must
// never see a trial process between its fork and its track() as an unclaimed
// orphan (trials may run in parallel).
std::mutex g_mutex;

class SubreaperContainment;
std::set<SubreaperContainment*> g_live;  // under g_mutex
std::set<pid_t> g_direct;                // every running trial's direct children, under g_mutex

std::mutex g_start_mutex;  // held from a trial process's fork to its track(), and by sweeps

// Now, on the clock of ProcEntry::start (uptime in clock ticks), less a tick
// for the rounding of /proc/uptime.
unsigned long long now_ticks() {
  double uptime = 0;
  std::ifstream("/proc/uptime") >> uptime;
  const double ticks = uptime * static_cast<double>(::sysconf(_SC_CLK_TCK));
  return ticks > 1 ? static_cast<unsigned long long>(ticks) - 1 : 0;
}

class SubreaperContainment : public Containment {
 public:
  SubreaperContainment() {
    static std::once_flag once;
    std::call_once(once, [] { ::prctl(PR_SET_CHILD_SUBREAPER, 1); });
    std::lock_guard lock(g_mutex);
    started_ = now_ticks();
    g_live.insert(this);
  }
  ~SubreaperContainment() override {
    end_all();
    std::lock_guard lock(g_mutex);
    for (const auto& [pid, start] : direct_) g_direct.erase(pid);
    g_live.erase(this);
  }

  Kind kind() const override { return Kind::Subreaper; }
  int child_join_fd() const override { return -1; }

  void track(pid_t pid) override {
    std::lock_guard lock(g_mutex);
    if (auto e = read_stat(pid)) {
      mine_[pid] = e->start;
      direct_[pid] = e->start;
      g_direct.insert(pid);
    }
  }

  void poll() override {
    if (Clock::now() < next_walk_) return;
    next_walk_ = Clock::now() + std::chrono::milliseconds(250);
    std::lock_guard lock(g_mutex);
    note_descendants(walk_proc());
  }

  int end_all() override {
    std::lock_guard start_lock(g_start_mutex);
    std::lock_guard lock(g_mutex);
    for (const auto& [pid, start] : direct_) g_direct.erase(pid);
    const pid_t self = ::getpid();
    // A few rounds: a process may fork while the previous round killed.
    for (int round = 0; round < 20; ++round) {
      const std::vector<ProcEntry> procs = walk_proc();
      note_descendants(procs);
      // Orphans adopted by tune that no trial claims, born during this trial.
      for (const auto& e : procs)
        if (e.ppid == self && !g_direct.count(e.pid) && e.start >= started_ && !claimed_by_other(e))
          mine_[e.pid] = e.start;
      int killed_now = 0;
      std::vector<pid_t> adopted_zombies;
      for (const auto& e : procs) {
        auto it = mine_.find(e.pid);
        if (it == mine_.end() || it->second != e.start) continue;
        if (e.ppid == self && !g_direct.count(e.pid)) adopted_zombies.push_back(e.pid);
        if (e.state == 'Z' || e.state == 'X' || !killed_.insert(e.pid).second) continue;
        ::kill(e.pid, SIGKILL);
        ++killed_now;
      }
      reap(adopted_zombies);
      if (killed_now == 0 && adopted_zombies.empty()) break;
    }
    return static_cast<int>(killed_.size());
  }

 private:
  // Adds every descendant of a process of this trial to it.
  void note_descendants(const std::vector<ProcEntry>& procs) {
    std::map<pid_t, const ProcEntry*> by_pid;
    for (const auto& e : procs) by_pid[e.pid] = &e;
    bool grew = true;
    while (grew) {
      grew = false;
      for (const auto& e : procs) {
        if (mine_.count(e.pid) && mine_[e.pid] == e.start) continue;
        auto parent = by_pid.find(e.ppid);
        if (parent == by_pid.end()) continue;
        auto it = mine_.find(e.ppid);
        if (it == mine_.end() || it->second != parent->second->start) continue;
        mine_[e.pid] = e.start;
        grew = true;
      }
    }
  }

  bool claimed_by_other(const ProcEntry& e) const {
    for (const SubreaperContainment* c : g_live) {
      if (c == this) continue;
      auto it = c->mine_.find(e.pid);
      if (it != c->mine_.end() && it->second == e.start) return true;
    }
    return false;
  }

  // Adopted processes are tune's children now: reap them, or they stay zombies.
  static void reap(const std::vector<pid_t>& pids) {
    const auto until = Clock::now() + std::chrono::seconds(2);
    for (pid_t pid : pids) {
      while (true) {
        pid_t r = ::waitpid(pid, nullptr, WNOHANG);
        if (r != 0 || Clock::now() > until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
  }

  unsigned long long started_ = 0;
  std::map<pid_t, unsigned long long> mine_;    // pid -> start: every process seen to belong to the trial
  std::map<pid_t, unsigned long long> direct_;  // the launcher's own children (it reaps them)
  std::set<pid_t> killed_;
  Clock::time_point next_walk_ = Clock::now();
};

// ---------------------------------------------------------------------------
// cgroup v2

// tune's cgroup v2 directory, or "" when there is none to use.
std::string own_cgroup_dir() {
  std::string mount;
  {
    std::ifstream info("/proc/self/mountinfo");
    for (std::string line; std::getline(info, line);) {
      // "... <mount point> <options> [optional fields] - <fstype> <source> ..."
      size_t dash = line.find(" - ");
      if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
      std::istringstream fields(line.substr(0, dash));
      std::string f, point;
      for (int i = 0; i < 5 && fields >> f; ++i)
        if (i == 4) point = f;
      if (!point.empty()) {
        mount = point;
        break;
      }
    }
  }
  if (mount.empty()) return "";
  std::ifstream cg("/proc/self/cgroup");
  for (std::string line; std::getline(cg, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    std::string rel = line.substr(3);
    // A cgroup outside our namespace's view shows as "/.." : not usable.
    if (rel.find("/..") != std::string::npos) return "";
    std::string dir = mount + (rel == "/" ? "" : rel);
    struct stat st;
    return ::stat((dir + "/cgroup.procs").c_str(), &st) == 0 ? dir : "";
  }
  return "";
}

std::string run_dir_of(const std::string& own, pid_t tune_pid) { return own + "/partune-" + std::to_string(tune_pid); }

std::atomic<int> g_trial_counter{0};

// The pids in a cgroup's cgroup.procs.
std::vector<pid_t> cgroup_pids(const std::string& dir) {
  std::vector<pid_t> out;
  std::ifstream f(dir + "/cgroup.procs");
  for (long pid; f >> pid;) out.push_back(static_cast<pid_t>(pid));
  return out;
}

bool cgroup_populated(const std::string& dir) {
  std::string events = read_text(dir + "/cgroup.events");
  return events.find("populated 1") != std::string::npos;
}

// Ends every process in `dir` and below; waits (briefly) until it is empty.
// Returns the pids it found there.
std::vector<pid_t> kill_cgroup(const std::string& dir) {
  const std::vector<pid_t> found = cgroup_pids(dir);
  if (!write_text(dir + "/cgroup.kill", "1")) {
    // Before Linux 5.14: kill what is listed until nothing is.
    for (int round = 0; round < 50; ++round) {
      std::vector<pid_t> pids = cgroup_pids(dir);
      if (pids.empty()) break;
      for (pid_t p : pids) ::kill(p, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const auto until = Clock::now() + std::chrono::seconds(2);
  while (cgroup_populated(dir) && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return found;
}

// Of `pids`, those that are now this process's children (adopted when tune is
// a subreaper too) are reaped, so no zombie is left.
void reap_adopted(const std::vector<pid_t>& pids) {
  const pid_t self = ::getpid();
  const auto until = Clock::now() + std::chrono::seconds(2);
  for (pid_t pid : pids) {
    auto e = read_stat(pid);
    if (!e || e->ppid != self) continue;
    while (::waitpid(pid, nullptr, WNOHANG) == 0 && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// rmdir, retried while the kernel still counts an ended process in it.
void remove_cgroup_dir(const std::string& dir) {
  for (int i = 0; i < 200 && ::rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

void remove_run_dir(const std::string& run_dir) {
  reap_adopted(kill_cgroup(run_dir));
  std::vector<std::string> trials;
  if (DIR* dir = ::opendir(run_dir.c_str())) {
    while (dirent* ent = ::readdir(dir))
      if (std::string_view(ent->d_name).rfind("trial-", 0) == 0) trials.push_back(run_dir + "/" + ent->d_name);
    ::closedir(dir);
  }
  for (const auto& t : trials) remove_cgroup_dir(t);
  remove_cgroup_dir(run_dir);
}

class CgroupContainment : public Containment {
 public:
  CgroupContainment(std::string run_dir, std::string dir, int procs_fd)
      : run_dir_(std::move(run_dir)), dir_(std::move(dir)), procs_fd_(procs_fd) {}
  ~CgroupContainment() override {
    end_all();
    ::close(procs_fd_);
    remove_cgroup_dir(dir_);
    // run_dir_ stays while tune lives (a trial beside this one may be creating
    // its cgroup in it); the guard removes it when tune ends.
  }

  Kind kind() const override { return fallback_ ? Kind::Subreaper : Kind::Cgroup; }
  int child_join_fd() const override { return procs_fd_; }

  void track(pid_t pid) override {
    // A cgroup setup may accept the mkdir but not the move (delegation
    // rules): then this trial falls back to the subreaper walk.
    if (!joined(pid) && !fallback_) fallback_ = std::make_unique<SubreaperContainment>();
    if (fallback_) fallback_->track(pid);
  }
  void poll() override {
    if (fallback_) fallback_->poll();
  }
  int end_all() override {
    const std::vector<pid_t> killed = kill_cgroup(dir_);
    reap_adopted(killed);
    int n = static_cast<int>(killed.size());
    if (fallback_) n += fallback_->end_all();
    return n;
  }

 private:
  // In the cgroup, or ended already (a trial may be over before it is tracked:
  // an exited process leaves cgroup.procs).
  bool joined(pid_t pid) const {
    for (pid_t p : cgroup_pids(dir_))
      if (p == pid) return true;
    auto e = read_stat(pid);
    if (!e || e->state == 'Z' || e->state == 'X') return true;
    const std::string rel = dir_.substr(dir_.find("/partune-"));
    const std::string cg = read_text("/proc/" + std::to_string(pid) + "/cgroup");
    return cg.find("0::") != std::string::npos && cg.find(rel + "\n") != std::string::npos;
  }

  std::string run_dir_, dir_;
  int procs_fd_;
  std::unique_ptr<SubreaperContainment> fallback_;
};

// The run cgroups of tunes that are gone and whose guard did not remove them
// (both killed at once): what is in them is ended, the directories removed.
void sweep_dead_runs(const std::string& own) {
  DIR* dir = ::opendir(own.c_str());
  if (!dir) return;
  std::vector<std::string> dead;
  while (dirent* ent = ::readdir(dir)) {
    std::string_view name = ent->d_name;
    if (name.rfind("partune-", 0) != 0) continue;
    char* end = nullptr;
    long pid = std::strtol(ent->d_name + 8, &end, 10);
    if (pid <= 0 || *end != '\0' || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    dead.push_back(own + "/" + std::string(name));
  }
  ::closedir(dir);
  for (const auto& d : dead) remove_run_dir(d);
}

std::unique_ptr<Containment> make_cgroup() {
  static const std::string own = own_cgroup_dir();
  if (own.empty()) return nullptr;
  static std::once_flag swept;
  std::call_once(swept, [] { sweep_dead_runs(own); });
  const std::string run_dir = run_dir_of(own, ::getpid());
  if (::mkdir(run_dir.c_str(), 0755) != 0 && errno != EEXIST) return nullptr;
  const std::string dir = run_dir + "/trial-" + std::to_string(++g_trial_counter);
  if (::mkdir(dir.c_str(), 0755) != 0) return nullptr;
  int fd = ::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    ::rmdir(dir.c_str());
    return nullptr;
  }
  return std::make_unique<CgroupContainment>(run_dir, dir, fd);
}

}  // namespace

std::unique_ptr<Containment> Containment::create() {
  const char* forced = std::getenv("PARTUNE_CONTAINMENT");
  if (!forced || std::string_view(forced) != "subreaper")
    if (auto c = make_cgroup()) return c;
  return std::make_unique<SubreaperContainment>();
}

std::unique_lock<std::mutex> Containment::hold_for_start() { return std::unique_lock(g_start_mutex); }

std::string_view to_string(Containment::Kind kind) {
  return kind == Containment::Kind::Cgroup ? "cgroup" : "subreaper";
}

void end_run_cgroups(pid_t tune_pid) {
  const std::string own = own_cgroup_dir();
  if (own.empty()) return;
  const std::string run_dir = run_dir_of(own, tune_pid);
  struct stat st;
  if (::stat(run_dir.c_str(), &st) == 0) remove_run_dir(run_dir);
}

}  // namespace partune
