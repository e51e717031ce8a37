// A temporary folder of a test's own, removed with everything in it at the end.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

namespace partune::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "partune-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (!mkdtemp(tmpl.data())) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace partune::testing
