// Inputs the fuzz targets (tests/fuzz) found, kept as plain tests: raw
// control characters, which made Debian's toml++ assert (abort) inside the
// parser instead of reporting an error, are refused with file:line:col.
#include <gtest/gtest.h>

#include <string>

#include "common/error.h"
#include "common/job_config.h"
#include "tests/support/input_error.h"
#include "tuner/space/space.h"

namespace partune {
namespace {

using partune::testing::error_of;

// From fuzz_job_config_roundtrip: a table header with a NUL and other
// control bytes in it ("[\x14\0\0\0lr_scheduler]").
constexpr char kHeaderWithNulRaw[] = "[job]\ndescription = \"x\"\n\n[\x14\0\0\0lr_scheduler]\n";
const std::string kHeaderWithNul(kHeaderWithNulRaw, sizeof kHeaderWithNulRaw - 1);

TEST(FuzzFindings, ControlCharactersInAJobConfigAreAnErrorNamingLineAndColumn) {
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string(kHeaderWithNul, "job.toml"); }),
            "job.toml:4:2: control character U+0014 is not allowed in TOML (escape it inside a string)");
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string("[job]\ndescription = \"a\x7f\"\n", "job.toml"); }),
            "job.toml:2:17: control character U+007F is not allowed in TOML (escape it inside a string)");
}

TEST(FuzzFindings, ControlCharactersInASpaceFileAreAnErrorNamingLineAndColumn) {
  const std::string space = "[study]\nname = \"s\"\n" + kHeaderWithNul;
  EXPECT_EQ(error_of([&] { load_space_from_string(space, "space.toml"); }),
            "space.toml:6:2: control character U+0014 is not allowed in TOML (escape it inside a string)");
}

// From fuzz_job_config_roundtrip: "[# Qwen3...": toml++ assumes a table
// header starts with a key (undefined behaviour in a release build).
TEST(FuzzFindings, TableHeaderThatDoesNotStartWithAKeyIsAnError) {
  for (const std::string header : {"[# x]", "[[#x]]", "[ .x]", "[!x]", "[\t{x]", "[[[x]]]", "[\xc3\xa9x]"}) {
    const std::string text = "[job]\ndescription = \"d\"\n  " + header + "\n";
    EXPECT_NE(error_of([&] { JobConfig::from_toml_string(text, "job.toml"); }).find("job.toml:3:"), std::string::npos)
        << header;
    EXPECT_NE(
        error_of([&] { JobConfig::from_toml_string(text, "job.toml"); }).find("a table header must start with a key"),
        std::string::npos)
        << header;
  }
  EXPECT_EQ(error_of([] { load_space_from_string("[study]\nname = \"s\"\n[#base]\n", "space.toml"); }),
            "space.toml:3:2: a table header must start with a key (a bare key or a quoted one)");
}

// From fuzz_job_config_roundtrip: "[optimiz\uFEEE]" made toml++ reach an
// unreachable branch of its Unicode tables (undefined behaviour).
TEST(FuzzFindings, NonAsciiOutsideStringsIsAnError) {
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string("[job]\n[optimiz\xef\xbb\xae]\n", "job.toml"); }),
            "job.toml:2:9: a non-ASCII character outside a string or comment (TOML keys are ASCII; quote the key)");
  // After "10" a quote starts no string (toml++ reads on as the number).
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string("[job]\nrec=-[\"G\xef\xbb\xbd\"\n", "job.toml"); }),
            "job.toml:2:9: a non-ASCII character outside a string or comment (TOML keys are ASCII; quote the key)");
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string("[training]\nsteps = 10\"a\xef\xbb\xaf\"\n", "job.toml"); }),
            "job.toml:2:13: a non-ASCII character outside a string or comment (TOML keys are ASCII; quote the key)");
  // Non-ASCII inside a comment and a string is fine: no error.
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string("[job] # caf\xc3\xa9\ndescription = \"caf\xc3\xa9\"\n", "j"); }),
            "");
}

// From fuzz_job_config_roundtrip: '"""\\' and a Greek Alpha.
TEST(FuzzFindings, BackslashBeforeNonAsciiInAMultiLineStringIsAnError) {
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string("[job]\ndescription = \"\"\"a\\\xce\x91\"\"\"\n", "job.toml"); }),
            "job.toml:2:19: '\\' before a non-ASCII character is no escape (write \\uXXXX)");
}

// From fuzz_job_config_roundtrip: "description = [}[[[...".
TEST(FuzzFindings, MismatchedBracketIsAnError) {
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string("[job]\ndescription = [1, }\n", "job.toml"); }),
            "job.toml:2:19: '}' where a '[' is open");
  EXPECT_EQ(error_of([] { JobConfig::from_toml_string("[job]\nx = {a = [1]]\n", "job.toml"); }),
            "job.toml:2:13: ']' where a '{' is open");
}

TEST(FuzzFindings, BracketsInsideValuesAndStringsAreNoTableHeaders) {
  // Nested arrays, strings and comments whose lines start with '[' are values.
  const std::string text =
      "[compile]\ncomponents = [\n  \"model\",\n  \"loss\" # [#x]\n]\n"
      "[job]\ndescription = \"\"\"\n[# not a header\n\"\"\"\n"
      "[\"quoted key\"]\n";
  EXPECT_EQ(error_of([&] { JobConfig::from_toml_string(text, "job.toml"); }).find("table header must start"),
            std::string::npos);
}

TEST(FuzzFindings, TabsAndCrlfLineEndsAreStillTomlWhitespace) {
  JobConfig c = JobConfig::from_toml_string("[training]\r\n\tsteps = 3\r\n", "job.toml");
  EXPECT_EQ(c.get_int("training.steps"), 3);
}

}  // namespace
}  // namespace partune
