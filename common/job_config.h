// The torchtitan v0.2.x job config: its schema (keys, types, defaults), TOML
// and `--section.key value` CLI parsing, and TOML output. Shared by the tuner
// (which writes trial configs and exports) and the trainer (which reads them).
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace partune {

using StringList = std::vector<std::string>;
using Value = std::variant<bool, int64_t, double, std::string, StringList>;

enum class ValueType { Bool, Int, Float, String, StringList, Any };

// What the embedded trainer does with a key.
enum class TrainerSupport {
  Implemented,    // behaves as in torchtitan
  Inert,          // has no effect on a training step (paths, logging sinks, names)
  Unimplemented,  // an error when set to anything but its default
};

// The switch of the feature a key belongs to: torchtitan reads the key only
// while the feature is on, i.e. while `key` is true (a boolean), equals
// `value` (a string) or lists `value` (a list of strings). With the feature
// off the key changes nothing, whatever its value.
struct FeatureGate {
  std::string key;
  std::string value;  // "" for a boolean switch
};

struct KeySpec {
  std::string key;  // "section.key" (nested: "training.dataloader.num_workers")
  ValueType type;
  std::optional<Value> default_value;  // nullopt: torchtitan's None
  std::vector<std::string> choices;    // allowed string values; empty: any
  TrainerSupport trainer = TrainerSupport::Unimplemented;
  std::optional<FeatureGate> gate;  // nullopt: read whenever set
};

// Every key partune knows, in torchtitan's section order.
const std::vector<KeySpec>& job_config_schema();
const KeySpec* find_key_spec(std::string_view key);
// Sections whose keys are kept without type checks (for the torchtitan
// backend only): quantize, fault_tolerance, experimental, validation, ...
bool is_passthrough_key(std::string_view key);

class JobConfig;
// Whether the feature behind `gate` is on in `config` (defaults count).
bool feature_on(const JobConfig& config, const FeatureGate& gate);
// "model.converters does not list \"quantize.linear.float8\"": how to turn the feature off.
std::string feature_off_text(const FeatureGate& gate);

std::string value_to_string(const Value& v);  // TOML-like literal: 4, 1.0, "x", true, ["a", "b"]
std::string value_type_name(ValueType t);
nlohmann::json value_to_json(const Value& v);
// Converts JSON to the key's schema type; throws InputError naming `where` and the key.
Value value_from_json(std::string_view key, const nlohmann::json& j, std::string_view where);

// A job config: the values explicitly set; anything else reads as the default.
class JobConfig {
 public:
  // Throws InputError "path:line:col: key: reason" for unknown keys and wrong
  // types, and "path: not a regular file (...)" for a directory, FIFO or device.
  static JobConfig from_toml_file(const std::string& path);
  static JobConfig from_toml_string(std::string_view text, const std::string& source_name);

  // Sets a value, converting int -> float where the schema says float.
  // Throws InputError (naming `where` and the key) for unknown keys, wrong types, bad choices.
  void set(const std::string& key, const Value& v, std::string_view where = "");
  // Parses a CLI string per the key's type ("4", "1e-3", "true", "a,b").
  void set_from_string(const std::string& key, std::string_view text, std::string_view where = "");
  // torchtitan CLI: `--section.key value`, `--section.key=value`, `--section.flag`,
  // `--section.no-flag`. Throws InputError for anything else. `--job.config_file`
  // is accepted like any key.
  void apply_cli(const std::vector<std::string>& args);
  // Values of `over` win.
  void merge(const JobConfig& over);
  void erase(const std::string& key);

  bool has(std::string_view key) const;  // explicitly set
  // The explicit value, else the schema default; nullopt for None.
  std::optional<Value> get(std::string_view key) const;
  // Typed getters; throw InputError when the value is None or of another type.
  bool get_bool(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;  // ints read as floats
  std::string get_string(std::string_view key) const;
  StringList get_list(std::string_view key) const;

  const std::map<std::string, Value, std::less<>>& values() const { return values_; }

  // TOML text of the explicit values, sections in schema order, each section's
  // keys in schema order; parses back (from_toml_string) to an equal config.
  std::string to_toml() const;
  // {"section.key": value} of the explicit values, and back (types per the
  // schema; InputError naming `where` and the key).
  nlohmann::json to_json() const;
  static JobConfig from_json(const nlohmann::json& j, std::string_view where);
  // `--section.key value` overrides of the explicit values (booleans as flags).
  std::vector<std::string> to_cli() const;

  bool operator==(const JobConfig& o) const { return values_ == o.values_; }

 private:
  std::map<std::string, Value, std::less<>> values_;
};

}  // namespace partune
