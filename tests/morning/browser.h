// Headless Chromium for the report tests, run as a child process (argv, no
// shell): the DOM after loading a file, the console messages it logged, and
// a screenshot decoded with libpng.
#pragma once
#include <string>
#include <vector>

namespace partune::cli_testing {

inline const std::string kChromium = CHROMIUM_BIN;

struct Page {
  int exit_code = -1;
  std::string dom;                   // --dump-dom: the DOM after load, serialised
  std::vector<std::string> console;  // the page's console messages (errors, warnings, logs)
  std::string log;                   // chromium's stderr, for failure messages
};

// Loads `html_path` with network lookups disabled (any fetch fails and is
// logged), in a profile folder of its own under `work_dir`.
Page load_page(const std::string& html_path, const std::string& work_dir);

// Writes a width x height screenshot of the page to png_path; false (with
// chromium's output in `log`) when it did not.
bool screenshot(const std::string& html_path, const std::string& png_path, int width, int height,
                const std::string& work_dir, std::string* log);

struct Image {
  int width = 0, height = 0;
  double non_white = 0;  // fraction of pixels that are not (near) white
  size_t colours = 0;    // distinct colours, 4 bits a channel
};
// Decodes a PNG; width 0 when it cannot be read.
Image read_png(const std::string& path);

// The text from `<tag ... id="id"` to its closing tag (one level: SVG charts do not nest).
std::string element_by_id(const std::string& dom, const std::string& tag, const std::string& id);

// How many times `needle` occurs in `text`.
size_t count_of(const std::string& text, const std::string& needle);

}  // namespace partune::cli_testing
