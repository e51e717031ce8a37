#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>

#include "common/error.h"
#include "tuner/store/store.h"

namespace partune {

namespace {

// The study name as a file-name part: letters, digits, '.', '_' and '-' kept,
// anything else as %XX, so every study gets its own lock file.
std::string file_name_part(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string read_all(int fd) {
  std::string text;
  char buf[256];
  ssize_t n;
  off_t at = 0;
  while ((n = pread(fd, buf, sizeof buf, at)) > 0) {
    text.append(buf, static_cast<size_t>(n));
    at += n;
  }
  return text;
}

// "pid N since T" from the holder's "pid=N\nsince=T\n..." lines.
std::string holder_of(const std::string& text) {
  auto field = [&](const std::string& name) {
    auto at = text.find(name + "=");
    if (at == std::string::npos) return std::string("?");
    at += name.size() + 1;
    return text.substr(at, text.find('\n', at) - at);
  };
  // Empty while the holder, which has just locked, has not written it yet.
  if (text.find("pid=") == std::string::npos) return "it has just started";
  return "pid " + field("pid") + " since " + field("since");
}

// The holder's pid from its lines, when it names one.
std::optional<pid_t> holder_pid(const std::string& text) {
  const auto at = text.find("pid=");
  if (at == std::string::npos) return std::nullopt;
  char* end = nullptr;
  const long pid = std::strtol(text.c_str() + at + 4, &end, 10);
  if (end == text.c_str() + at + 4 || pid <= 0) return std::nullopt;
  return static_cast<pid_t>(pid);
}

// A tune killed with -9 can leave the lock held for a moment by a child it
// had just forked (between fork and exec, or on its way out when it sees its
// parent gone): the holder's pid is dead but the flock is not yet free.
// Wait for those, not for a live tune.
bool lock_after_dead_holder(int fd) {
  const std::optional<pid_t> pid = holder_pid(read_all(fd));
  if (!pid || ::kill(*pid, 0) == 0 || errno != ESRCH) return false;
  for (int i = 0; i < 250; ++i) {  // 5 s
    ::usleep(20000);
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK) return false;
  }
  return false;
}

}  // namespace

std::string StudyLock::lock_path_for(const std::string& db_path, const std::string& study) {
  // Keyed on the database itself: two paths to one file (a symlink, "./x.db"
  // and "x.db", a bind mount's other name) must meet at one lock.
  char* real = ::realpath(db_path.c_str(), nullptr);
  const std::string canonical = real ? std::string(real) : db_path;
  std::free(real);
  return canonical + "." + file_name_part(study) + ".lock";
}

StudyLock StudyLock::acquire(const std::string& db_path, const std::string& study) {
  const std::string path = lock_path_for(db_path, study);
  // O_CLOEXEC: trial processes must not inherit the lock, or it would outlive
  // the tuner. O_NOFOLLOW: a symlink planted at the lock's name must not make
  // tune create or truncate a file elsewhere.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && errno == ELOOP)
    throw InputError(path + ": the study lock file is a symbolic link; tune does not follow it (remove it)");
  if (fd < 0) throw InputError(path + ": cannot open the study lock file: " + std::strerror(errno));
  int err = flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno;
  if (err == EWOULDBLOCK && lock_after_dead_holder(fd)) err = 0;
  if (err != 0) {
    const std::string holder = err == EWOULDBLOCK ? holder_of(read_all(fd)) : "";
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw InputError("study '" + study + "' in " + db_path + " is being run by another tune (" + holder +
                       "); lock file " + path);
    throw InputError(path + ": cannot lock the study: " + std::strerror(err));
  }
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char since[32];
  std::strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
  const std::string text =
      "pid=" + std::to_string(getpid()) + "\nsince=" + since + "\nstudy=" + study + "\ndb=" + db_path + "\n";
  // Best effort: the lock is the flock, the text only explains it.
  [[maybe_unused]] const bool written =
      ftruncate(fd, 0) == 0 && pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size());
  return StudyLock(fd, path);
}

StudyLock::StudyLock(StudyLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }

StudyLock& StudyLock::operator=(StudyLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

// Closing the descriptor releases the flock. The file stays: removing it
// would race with another tuner that has opened it and waits to lock it.
StudyLock::~StudyLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace partune
