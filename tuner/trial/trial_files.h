// Files tune writes in a trial's folder (its job config, its output log),
// opened so that a symbolic link planted in the results folder cannot make
// tune write, truncate or append to a file somewhere else: the trial folder
// must be a real folder, and the file itself is opened with O_NOFOLLOW.
#pragma once
#include <cstdio>
#include <filesystem>
#include <string>

namespace partune {

// Creates the trial folder (and its parents) if missing. InputError when it
// is a symbolic link or not a folder.
void make_trial_dir(const std::filesystem::path& dir);

// Replaces `path` with `text`. InputError when `path` is a symbolic link or
// cannot be written.
void write_trial_file(const std::filesystem::path& path, const std::string& text);

// `path` opened for appending (created 0644 if missing), close-on-exec, not
// through a symbolic link; nullptr with errno set otherwise (ELOOP: a link).
std::FILE* open_trial_log(const std::string& path);

}  // namespace partune
