#include "model_metadata_v3.h"

#include <cmath>
#include <cstdio>
#include <set>
#include <string_view>

#include "text.h"

namespace tflite_transfer {
namespace {

// The roles each signature takes or returns (their names must differ within a signature).
struct SignatureRoles {
  const char* signature;
  std::vector<const char*> roles;
};

const std::vector<SignatureRoles>& RolesBySignature() {
  static const std::vector<SignatureRoles> roles = {{contract::kInfer, {"input", "output"}},
                                                    {contract::kLoad, {"input", "bottleneck"}},
                                                    {contract::kTrain, {"bottleneck", "label", "loss"}},
                                                    {contract::kTrainImages, {"input", "label", "loss"}}};
  return roles;
}

const std::string& NameOf(const TensorNames& names, std::string_view role) {
  if (role == kNameRoles[0]) return names.input;
  if (role == kNameRoles[1]) return names.bottleneck;
  if (role == kNameRoles[2]) return names.label;
  if (role == kNameRoles[3]) return names.loss;
  return names.output;
}

std::string& NameOf(TensorNames& names, std::string_view role) {
  return const_cast<std::string&>(NameOf(static_cast<const TensorNames&>(names), role));
}

// A name any TFLite API, Kotlin map, JS object and JSON key carries unchanged.
bool IsPlainName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  auto letter = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!letter(name[0])) return false;
  for (char c : name) {
    if (!letter(c) && !(c >= '0' && c <= '9') && c != '.' && c != '-') return false;
  }
  return true;
}

std::string Number(double value) {
  char shown[64];
  std::snprintf(shown, sizeof shown, "%g", value);
  return shown;
}

std::optional<std::pair<double, double>> OptionalRange(const Json& object, const char* key, bool* bad) {
  const Json* value = object.Find(key);
  if (!value || value->kind == Json::Kind::kNull) return std::nullopt;
  // Any list of numbers is read; range_is_valid (Version3Problems) wants two, finite, low < high.
  if (!value->is_array() || value->items.size() != 2 || !value->items[0].AsDouble() || !value->items[1].AsDouble()) {
    *bad = true;
    return std::nullopt;
  }
  return std::make_pair(*value->items[0].AsDouble(), *value->items[1].AsDouble());
}

Shape ReadShape(const Json* value, const std::string& what, const std::string& source) {
  if (!value || !value->is_array()) RefuseMetadata(source, what + " has no 'shape' list");
  Shape shape;
  for (const Json& size : value->items) {
    std::optional<int64_t> number = size.AsInt64();
    if (!number) RefuseMetadata(source, what + " has a shape that is not a list of integers");
    shape.push_back(*number);
  }
  return shape;
}

bool RangeIsValid(const std::pair<double, double>& range) {
  return std::isfinite(range.first) && std::isfinite(range.second) && range.first < range.second;
}

}  // namespace

void ParseVersion3Fields(const Json& root, ModelMetadata& metadata, const std::string& source) {
  const Json* names = root.Find("names");
  if (!names || !names->is_object() || names->members.size() != std::size(kNameRoles)) {
    RefuseMetadata(source, "'names' must give exactly the roles input, bottleneck, label, loss, output");
  }
  for (const char* role : kNameRoles) {
    const Json* name = names->Find(role);
    if (!name) RefuseMetadata(source, "'names' must give exactly the roles input, bottleneck, label, loss, output");
    if (!name->is_string()) RefuseMetadata(source, std::string("names.") + role + " is not a string");
    NameOf(metadata.names, role) = name->text;
  }
  const Json* input = root.Find("input");
  if (!input || !input->is_object()) RefuseMetadata(source, "'input' is not an object");
  InputSpec spec;
  const Json* kind = input->Find("kind");
  const Json* dtype = input->Find("dtype");
  if (!kind || !kind->is_string()) RefuseMetadata(source, "input.kind is not a string");
  std::optional<DType> parsed = dtype && dtype->is_string() ? DTypeFromNumpyName(dtype->text) : std::nullopt;
  if (!parsed) RefuseMetadata(source, "input needs a known 'dtype'");
  spec.kind = kind->text;
  spec.dtype = *parsed;
  spec.shape = ReadShape(input->Find("shape"), "input", source);
  bool bad_range = false;
  spec.range = OptionalRange(*input, "range", &bad_range);
  spec.base_range = OptionalRange(*input, "base_range", &bad_range);
  if (bad_range) RefuseMetadata(source, "input.range or input.base_range is not [low, high]");
  metadata.input = spec;
  const Json* adapter = root.Find("bottleneck_adapter");
  if (adapter && adapter->kind != Json::Kind::kNull) {
    const Json* adapter_kind = adapter->Find("kind");
    if (!adapter->is_object() || !adapter_kind || !adapter_kind->is_string()) {
      RefuseMetadata(source, "'bottleneck_adapter' is not {kind, cut_shape}");
    }
    metadata.bottleneck_adapter = BottleneckAdapter{adapter_kind->text,
                                                    ReadShape(adapter->Find("cut_shape"), "bottleneck_adapter", source)};
  }
}

std::vector<std::string> NamesProblems(const TensorNames& names, const std::vector<StateSpec>& state) {
  std::vector<std::string> problems;
  for (const char* role : kNameRoles) {
    if (!IsPlainName(NameOf(names, role))) {
      problems.push_back(std::string(role) + " name " + Quoted(NameOf(names, role)) +
                         " is not a name (a letter or _, then up to 63 letters, digits, _ . -)");
    }
  }
  for (const SignatureRoles& signature : RolesBySignature()) {
    for (size_t index = 0; index < signature.roles.size(); ++index) {
      for (size_t other = index + 1; other < signature.roles.size(); ++other) {
        const std::string& name = NameOf(names, signature.roles[index]);
        if (name == NameOf(names, signature.roles[other])) {
          problems.push_back(std::string(signature.roles[index]) + " and " + signature.roles[other] +
                             " are both named " + Quoted(name) + " in '" +
                             signature.signature + "'");
        }
      }
    }
  }
  std::set<std::string> clashes;
  for (const char* role : kNameRoles) {
    for (const StateSpec& spec : state) {
      if (spec.name == NameOf(names, role)) clashes.insert(spec.name);
    }
  }
  if (!clashes.empty()) {
    std::string listed;
    for (const std::string& name : clashes) listed += (listed.empty() ? "" : ", ") + Quoted(name);
    problems.push_back(listed + " is also a state variable's name");
  }
  return problems;
}

std::vector<std::string> Version3Problems(const ModelMetadata& metadata) {
  std::vector<std::string> problems = NamesProblems(metadata.names, metadata.state);
  if (metadata.names.output != metadata.output) {
    problems.push_back("output " + Quoted(metadata.output) + " is not names.output " + Quoted(metadata.names.output));
  }
  if (!metadata.input) {
    problems.push_back("no input");
  } else {
    const InputSpec& input = *metadata.input;
    if (input.kind != kImageKind && input.kind != kTensorKind) problems.push_back("input kind " + Quoted(input.kind));
    bool sizes_ok = !input.shape.empty();
    for (int64_t size : input.shape) sizes_ok = sizes_ok && size >= 1;
    if (!sizes_ok) problems.push_back("input shape " + ShapeString(input.shape));
    for (const auto& [what, range] : {std::make_pair("range", input.range), std::make_pair("base_range", input.base_range)}) {
      if (range && !RangeIsValid(*range)) {
        problems.push_back(std::string("input ") + what + " [" + Number(range->first) + ", " + Number(range->second) + "]");
      }
    }
  }
  if (const auto& adapter = metadata.bottleneck_adapter) {
    const Shape& shape = adapter->cut_shape;
    bool known = false, sizes_ok = !shape.empty();
    for (const char* kind : kBottleneckAdapters) known = known || adapter->kind == kind;
    for (int64_t size : shape) sizes_ok = sizes_ok && size >= 1;
    int64_t features = 0;
    if (sizes_ok) features = adapter->kind == kBottleneckAdapters[0] ? NumElements(shape).value_or(-1) : shape.back();
    if (!known || (shape.size() != 2 && shape.size() != 3) || !sizes_ok || features != metadata.bottleneck_size) {
      problems.push_back("bottleneck_adapter " + Quoted(adapter->kind) + " cut_shape " + ShapeString(shape) +
                         " for bottleneck_size " + std::to_string(metadata.bottleneck_size));
    }
  }
  return problems;
}

}  // namespace tflite_transfer
