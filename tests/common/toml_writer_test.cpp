// The job-config TOML writer: whatever a config holds, the text it writes
// parses back to the same table. Keys and strings come from users (a base
// config, a space file), so they may hold newlines, quotes, '=' and control
// characters; none of them may inject a key or make the file unparsable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "common/error.h"
#include "common/job_config.h"
#include "tests/support/input_error.h"

using namespace partune;

namespace {

using partune::testing::error_of;

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Valid UTF-8 (TOML text is UTF-8), weighted towards what breaks writers:
// every control character, DEL, quotes, backslashes, TOML syntax.
std::string hostile_string(std::mt19937_64& rng, size_t max_len) {
  static const char32_t kNasty[] = {U'\n', U'\r', U'\t', U'\0', 0x7f, U'"', U'\'', U'\\',  U'=',   U'[',   U']',
                                    U'#',  U'.',  U' ',  U'{',  U'}', 0x1b, 0x85,  0x2028, 0xfeff, 0x1F600};
  std::uniform_int_distribution<size_t> len(0, max_len);
  std::uniform_int_distribution<int> pick(0, 3);
  std::string out;
  for (size_t i = 0, n = len(rng); i < n; ++i) {
    switch (pick(rng)) {
      case 0:
        append_utf8(out, kNasty[rng() % std::size(kNasty)]);
        break;
      case 1:
        append_utf8(out, static_cast<char32_t>(rng() % 0x20));
        break;
      case 2:
        append_utf8(out, static_cast<char32_t>(0x20 + rng() % 0x5f));
        break;
      default: {
        char32_t cp = static_cast<char32_t>(0x80 + rng() % 0x10ff80);
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE000;  // surrogates are not characters
        append_utf8(out, cp);
      }
    }
  }
  return out;
}

double hostile_double(std::mt19937_64& rng) {
  static const double kEdges[] = {0.0,
                                  -0.0,
                                  1e-300,
                                  5e-324,
                                  std::numeric_limits<double>::max(),
                                  -std::numeric_limits<double>::max(),
                                  0.1,
                                  1.0 / 3.0,
                                  123456789012345678.0};
  if (rng() % 3 == 0) return kEdges[rng() % std::size(kEdges)];
  double d;
  do {
    const uint64_t bits = rng();
    std::memcpy(&d, &bits, sizeof d);
  } while (!std::isfinite(d));
  return d;
}

Value value_for(const KeySpec& spec, std::mt19937_64& rng) {
  if (!spec.choices.empty()) return spec.choices[rng() % spec.choices.size()];
  switch (spec.type) {
    case ValueType::Bool:
      return rng() % 2 == 0;
    case ValueType::Int:
      return static_cast<int64_t>(rng());
    case ValueType::Float:
      return hostile_double(rng);
    case ValueType::StringList: {
      StringList l;
      for (size_t i = 0, n = rng() % 4; i < n; ++i) l.push_back(hostile_string(rng, 12));
      return l;
    }
    default:
      return hostile_string(rng, 24);
  }
}

// A random config: schema keys with random values of their type, plus
// passthrough keys whose names are hostile too.
JobConfig random_config(std::mt19937_64& rng) {
  const auto& schema = job_config_schema();
  JobConfig c;
  for (size_t i = 0, n = 1 + rng() % 12; i < n; ++i) {
    const KeySpec& spec = schema[rng() % schema.size()];
    c.set(spec.key, value_for(spec, rng));
  }
  for (size_t i = 0, n = rng() % 4; i < n; ++i) {
    std::string key = rng() % 2 ? "quantize." : "experimental.";
    key += hostile_string(rng, 10);
    if (rng() % 3 == 0) key += "." + hostile_string(rng, 6);
    Value v = rng() % 2 ? Value{hostile_string(rng, 10)} : Value{hostile_double(rng)};
    try {
      c.set(key, v);
    } catch (const InputError&) {
      // A key that clashes with an earlier one as value and table: refused, fine.
    }
  }
  return c;
}

}  // namespace

TEST(TomlWriter, EveryConfigParsesBackToTheSameTable) {
  std::mt19937_64 rng(12);
  for (int i = 0; i < 3000; ++i) {
    const JobConfig c = random_config(rng);
    const std::string text = "# partune trial x\n" + c.to_toml();
    JobConfig back;
    const std::string err = error_of([&] { back = JobConfig::from_toml_string(text, "written"); });
    ASSERT_EQ(err, "") << "case " << i << ":\n" << text;
    ASSERT_EQ(back, c) << "case " << i << ":\n" << text;
  }
}

TEST(TomlWriter, NewlineInAKeyDoesNotInjectATable) {
  JobConfig c;
  c.set("quantize.x\n[checkpoint]\nenable", true);
  c.set("job.description", std::string("a\n[checkpoint]\nenable = true"));
  const std::string text = c.to_toml();
  const JobConfig back = JobConfig::from_toml_string(text, "written");
  EXPECT_FALSE(back.has("checkpoint.enable")) << text;
  EXPECT_EQ(back, c) << text;
}

TEST(TomlWriter, DelAndControlCharactersAreEscaped) {
  JobConfig c;
  c.set("job.description", std::string("del \x7f esc \x1b nul ") + '\0' + " end");
  const std::string text = c.to_toml();
  EXPECT_NE(text.find("\\u007f"), std::string::npos) << text;
  EXPECT_NE(text.find("\\u001b"), std::string::npos) << text;
  EXPECT_NE(text.find("\\u0000"), std::string::npos) << text;
  EXPECT_EQ(JobConfig::from_toml_string(text, "written"), c) << text;
}

TEST(TomlWriter, KeyThatIsBothValueAndTableIsRefused) {
  JobConfig c;
  c.set("quantize.a", int64_t{1});
  EXPECT_NE(error_of([&] { c.set("quantize.a.b", int64_t{2}); }).find("conflicts with key 'quantize.a'"),
            std::string::npos);
}

TEST(TomlWriter, NonFiniteNumbersAreRefusedNamingTheKey) {
  JobConfig c;
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
    EXPECT_NE(error_of([&] {
                c.set("optimizer.lr", bad, "f.toml:3:1");
              }).find("f.toml:3:1: key 'optimizer.lr': must be a finite number"),
              std::string::npos);
    EXPECT_NE(error_of([&] { c.set("quantize.x", bad, "f.toml:4:1"); }).find("key 'quantize.x': must be a finite"),
              std::string::npos);
  }
  EXPECT_NE(error_of([] {
              JobConfig::from_toml_string("[optimizer]\nlr = nan\n", "b.toml");
            }).find("b.toml:2:6: key 'optimizer.lr': must be a finite number, got nan"),
            std::string::npos);
  EXPECT_FALSE(c.has("optimizer.lr"));
}

// Arbitrary bytes (a fuzzer's, or a trainer's command line): what set()
// accepts is UTF-8 and round-trips; the rest is refused, naming the key.
TEST(TomlWriter, ArbitraryBytesAreRefusedOrRoundTrip) {
  std::mt19937_64 rng(7);
  int refused = 0, kept = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string bytes;
    for (size_t n = rng() % 8; n > 0; --n) bytes += static_cast<char>(rng() % 256);
    JobConfig c;
    const std::string err = error_of([&] { c.set("job.description", bytes, "cli"); });
    const std::string key_err = error_of([&] { c.set("quantize." + bytes, int64_t{1}, "cli"); });
    if (!err.empty()) {
      EXPECT_NE(err.find("cli: key 'job.description': value is not valid UTF-8"), std::string::npos) << err;
      ++refused;
    }
    if (!err.empty()) {  // the same bytes as a key part
      EXPECT_NE(key_err.find("not valid UTF-8"), std::string::npos) << key_err;
    }
    if (err.empty() || key_err.empty()) ++kept;
    EXPECT_EQ(JobConfig::from_toml_string(c.to_toml(), "written"), c) << c.to_toml();
  }
  EXPECT_GT(refused, 100);
  EXPECT_GT(kept, 100);
  JobConfig c;
  for (const char* bad : {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80"})
    EXPECT_NE(error_of([&] { c.set("job.description", std::string(bad)); }), "") << bad;
  EXPECT_EQ(error_of([&] { c.set("job.description", std::string("\xe2\x82\xac \xf0\x9f\x98\x80")); }), "");
}
