#include "tuner/trial/trial_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace partune {

namespace fs = std::filesystem;

void make_trial_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::file_status st = fs::symlink_status(dir, ec);
  if (fs::is_symlink(st))
    throw InputError(dir.string() +
                     ": the trial folder is a symbolic link; tune writes only in folders it made (remove it)");
  if (ec || !fs::is_directory(st))
    throw InputError(dir.string() + ": cannot create the trial folder" + (ec ? ": " + ec.message() : std::string()));
}

void write_trial_file(const fs::path& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ELOOP)
    throw InputError(path.string() + ": is a symbolic link; tune does not write through it (remove it)");
  if (fd < 0) throw InputError(path.string() + ": cannot write: " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw InputError(path.string() + ": cannot write: " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) throw InputError(path.string() + ": cannot write: " + std::strerror(errno));
}

std::FILE* open_trial_log(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return nullptr;
  std::FILE* f = ::fdopen(fd, "a");
  if (!f) ::close(fd);
  return f;
}

}  // namespace partune
