// Parsing the model's metadata record (contract versions 1, 2 and 3) and checking it is
// consistent, as contract.ModelMetadata.from_json does (version 3's own fields:
// model_metadata_v3.cc).
#include "model_metadata.h"

#include <cmath>
#include <set>

#include "errors.h"
#include "json.h"
#include "model_metadata_v3.h"
#include "text.h"

namespace tflite_transfer {

void RefuseMetadata(const std::string& source, const std::string& problem) {
  throw UnsupportedModelError(Printable(source) + ": the '" + std::string(contract::kMetadataKey) +
                              "' metadata is unusable: " + problem + "; recompile the model with compile-transfer");
}

namespace {

[[noreturn]] void BadMetadata(const std::string& source, const std::string& problem) { RefuseMetadata(source, problem); }

const Json& Require(const Json& object, const char* key, const std::string& source) {
  const Json* value = object.Find(key);
  if (!value) BadMetadata(source, std::string("'") + key + "' is missing");
  return *value;
}

int64_t RequirePositive(const Json& root, const char* key, const std::string& source) {
  std::optional<int64_t> number = Require(root, key, source).AsInt64();
  if (!number || *number < 1) BadMetadata(source, std::string("'") + key + "' is not a positive integer");
  return *number;
}

std::string RequireString(const Json& object, const char* key, const std::string& source) {
  const Json& value = Require(object, key, source);
  if (!value.is_string() || value.text.empty()) BadMetadata(source, std::string("'") + key + "' is not a non-empty string");
  return value.text;
}

std::string OptionalString(const Json& object, const char* key, const std::string& source) {
  const Json* value = object.Find(key);
  if (!value || value->kind == Json::Kind::kNull) return "";
  if (!value->is_string()) BadMetadata(source, std::string("'") + key + "' is not a string");
  return value->text;
}

std::optional<int64_t> OptionalBatch(const Json& root, const char* key, const std::string& source) {
  const Json* value = root.Find(key);
  if (!value || value->kind == Json::Kind::kNull) return std::nullopt;
  std::optional<int64_t> number = value->AsInt64();
  if (!number || *number < 1) BadMetadata(source, std::string("fixed batch '") + key + "' is not null or >= 1");
  return number;
}

Shape ParseShape(const Json& shape, const std::string& what, const std::string& source) {
  if (!shape.is_array()) BadMetadata(source, what + " has no 'shape' list");
  Shape result;
  for (const Json& size : shape.items) {
    std::optional<int64_t> value = size.AsInt64();
    if (!value || *value < 0) BadMetadata(source, what + " has a bad shape");
    result.push_back(*value);
  }
  return result;
}

DType ParseDType(const Json* dtype, const std::string& what, const std::string& source) {
  std::optional<DType> parsed = dtype && dtype->is_string() ? DTypeFromNumpyName(dtype->text) : std::nullopt;
  if (!parsed) BadMetadata(source, what + " needs a known 'dtype'");
  return *parsed;
}

// Version 2: a list of {name, shape, dtype, role, layer?, slot?, of?}.
std::vector<StateSpec> ParseStateList(const Json& state, const std::string& source) {
  if (!state.is_array() || state.items.empty()) BadMetadata(source, "'state' is not a non-empty list");
  std::vector<StateSpec> specs;
  for (const Json& entry : state.items) {
    if (!entry.is_object()) BadMetadata(source, "a 'state' entry is not an object");
    StateSpec spec;
    spec.name = RequireString(entry, "name", source);
    std::string what = "state " + Quoted(spec.name);
    spec.dtype = ParseDType(entry.Find("dtype"), what, source);
    spec.shape = ParseShape(Require(entry, "shape", source), what, source);
    spec.role = RequireString(entry, "role", source);
    spec.layer = OptionalString(entry, "layer", source);
    spec.slot = OptionalString(entry, "slot", source);
    spec.of = OptionalString(entry, "of", source);
    specs.push_back(std::move(spec));
  }
  return specs;
}

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool StartsWith(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// Version 1: {name: {shape, dtype}}; roles follow from the names as contract._upgrade_version_1
// derives them (the only place names are taken apart, for files written before roles existed).
std::vector<StateSpec> UpgradeStateObject(const Json& state, const std::string& source) {
  if (!state.is_object() || state.members.empty()) BadMetadata(source, "'state' is not a non-empty object");
  std::vector<std::string> names, weights;
  for (const auto& [name, spec] : state.members) names.push_back(name);
  for (const std::string& name : names) {
    if (!EndsWith(name, std::string("_") + contract::kRoleKernel) &&
        !EndsWith(name, std::string("_") + contract::kRoleBias)) {
      continue;
    }
    bool is_slot = false;
    for (const std::string& other : names) is_slot = is_slot || (other != name && StartsWith(name, other + "_"));
    if (!is_slot) weights.push_back(name);
  }
  std::vector<StateSpec> specs;
  for (const auto& [name, entry] : state.members) {
    StateSpec spec;
    spec.name = name;
    std::string what = "state " + Quoted(name);
    if (!entry.is_object()) BadMetadata(source, what + " is not an object");
    spec.dtype = ParseDType(entry.Find("dtype"), what, source);
    spec.shape = ParseShape(Require(entry, "shape", source), what, source);
    const std::string* owner = nullptr;
    for (const std::string& weight : weights) {
      if (!owner && StartsWith(name, weight + "_")) owner = &weight;
    }
    size_t last = name.rfind('_');
    if (name == contract::kStepTensor || name == contract::kLearningRateTensor) {
      spec.role = name;
    } else if (owner) {
      spec.role = contract::kRoleSlot;
      spec.of = *owner;
      spec.slot = name.substr(owner->size() + 1);
      spec.layer = owner->substr(0, owner->rfind('_'));
    } else if (last != std::string::npos) {
      spec.role = name.substr(last + 1);
      spec.layer = name.substr(0, last);
    } else {
      BadMetadata(source, what + " has no role (a version 1 name without a '_<role>' suffix)");
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

bool IsDigest(const std::string& text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsRole(const std::string& role) {
  for (const char* known : contract::kRoles) {
    if (role == known) return true;
  }
  return false;
}

std::optional<std::pair<double, double>> OptionalRange(const Json& root, const char* key, const std::string& source) {
  const Json* value = root.Find(key);
  if (!value || value->kind == Json::Kind::kNull) return std::nullopt;
  std::optional<double> low, high;
  if (value->is_array() && value->items.size() == 2) {
    low = value->items[0].AsDouble();
    high = value->items[1].AsDouble();
  }
  if (!low || !high || !(*low <= *high)) BadMetadata(source, std::string("'") + key + "' is not [low, high]");
  return std::make_pair(*low, *high);
}

void CheckConsistent(const ModelMetadata& metadata, const std::string& source) {
  std::set<std::string> seen;
  for (const StateSpec& spec : metadata.state) {
    if (!seen.insert(spec.name).second) BadMetadata(source, "duplicate state name " + Quoted(spec.name));
    if (!IsRole(spec.role)) BadMetadata(source, "state " + Quoted(spec.name) + " has role " + Quoted(spec.role));
  }
  if (metadata.label.kind != contract::kLabelClassIds && metadata.label.kind != contract::kLabelTargets &&
      metadata.label.kind != contract::kLabelOneHot) {
    BadMetadata(source, "label kind " + Quoted(metadata.label.kind));
  }
  if (!metadata.labels.empty() && static_cast<int64_t>(metadata.labels.size()) != metadata.num_outputs) {
    BadMetadata(source, std::to_string(metadata.labels.size()) + " labels for " +
                        std::to_string(metadata.num_outputs) + " outputs");
  }
  if (metadata.contract_version >= 2 && !IsDigest(metadata.model_digest)) BadMetadata(source, "no model_digest");
  if (metadata.contract_version >= 3) {
    std::string problems;
    for (const std::string& problem : Version3Problems(metadata)) problems += (problems.empty() ? "" : "; ") + problem;
    if (!problems.empty()) BadMetadata(source, problems);
  } else if (metadata.label.kind == contract::kLabelOneHot) {
    BadMetadata(source, "one_hot labels before contract version 3");
  }
}

// The optimizer's name and momentum (what the stable learning rate depends on); the rest of
// the record is the compiler's.
void ParseOptimizer(const Json& root, ModelMetadata& metadata, const std::string& source) {
  const Json* optimizer = root.Find("optimizer");
  if (!optimizer || optimizer->kind == Json::Kind::kNull) return;
  if (!optimizer->is_object()) BadMetadata(source, "'optimizer' is not an object");
  metadata.optimizer = OptionalString(*optimizer, "name", source);
  if (const Json* momentum = optimizer->Find("momentum"); momentum && momentum->kind != Json::Kind::kNull) {
    std::optional<double> value = momentum->AsDouble();
    if (!value || !std::isfinite(*value)) BadMetadata(source, "optimizer.momentum is not a number");
    metadata.momentum = *value;
  }
}

std::optional<double> OptionalNumber(const Json& root, const char* key, const std::string& source) {
  const Json* value = root.Find(key);
  if (!value || value->kind == Json::Kind::kNull) return std::nullopt;
  std::optional<double> number = value->AsDouble();
  if (!number) BadMetadata(source, std::string("'") + key + "' is not a number");
  return number;
}

}  // namespace

bool ModelMetadata::stateful() const {
  for (const StateSpec& spec : state) {
    if (spec.role == contract::kRoleBaseState) return true;
  }
  return false;
}

const StateSpec* ModelMetadata::FindState(const std::string& name) const {
  for (const StateSpec& spec : state) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

std::optional<int64_t> ModelMetadata::FixedBatch(const std::string& signature) const {
  for (const char* image_signature : contract::kImageSignatures) {
    if (signature == image_signature) return image_batch;
  }
  if (signature == contract::kTrain) return train_batch;
  return std::nullopt;
}

ModelMetadata ParseModelMetadata(std::string_view json, const std::string& source) {
  Json root;
  try {
    root = ParseJson(json);
  } catch (const JsonError& error) {
    BadMetadata(source, "invalid JSON (" + Printable(error.what()) + ")");
  }
  if (!root.is_object()) BadMetadata(source, "not a JSON object");
  const Json* format = root.Find("format");
  const Json* version = root.Find("contract_version");
  std::optional<int64_t> version_number = version ? version->AsInt64() : std::nullopt;
  bool supported = false;
  std::string supported_list;
  for (int known : contract::kSupportedContractVersions) {
    supported = supported || (version_number && *version_number == known);
    supported_list += (supported_list.empty() ? "" : ", ") + std::to_string(known);
  }
  if (!format || !format->is_string() || format->text != contract::kFormat || !supported) {
    throw UnsupportedModelError(
        Printable(source) + ": metadata format " + (format ? Printable(format->is_string() ? JsonQuote(format->text) : format->KindName()) : "missing") +
        " contract version " + (version ? Printable(version->text.empty() ? version->KindName() : version->text) : "missing") +
        "; this runtime reads '" + contract::kFormat + "' versions " + supported_list +
        ": recompile the model or update tflite-transfer");
  }
  ModelMetadata metadata;
  metadata.contract_version = static_cast<int>(*version_number);
  metadata.fingerprint = RequireString(root, "fingerprint", source);
  metadata.num_outputs = RequirePositive(root, "num_outputs", source);
  metadata.bottleneck_size = RequirePositive(root, "bottleneck_size", source);
  metadata.output = RequireString(root, "output", source);
  metadata.loss = RequireString(root, "loss", source);
  if (metadata.contract_version == 1) {
    metadata.state = UpgradeStateObject(Require(root, "state", source), source);
    metadata.label = metadata.loss != "mse" ? LabelSpec{contract::kLabelClassIds, DType::kInt32, {}}
                                            : LabelSpec{contract::kLabelTargets, DType::kFloat32, {metadata.num_outputs}};
  } else {
    metadata.state = ParseStateList(Require(root, "state", source), source);
    const Json& label = Require(root, "label", source);
    if (!label.is_object()) BadMetadata(source, "'label' is not an object");
    metadata.label.kind = RequireString(label, "kind", source);
    metadata.label.dtype = ParseDType(label.Find("dtype"), "label", source);
    metadata.label.shape = ParseShape(Require(label, "shape", source), "label", source);
    metadata.model_digest = OptionalString(root, "model_digest", source);
  }
  if (const Json* labels = root.Find("labels"); labels && labels->kind != Json::Kind::kNull) {
    if (!labels->is_array()) BadMetadata(source, "'labels' is not a list");
    for (const Json& label : labels->items) {
      if (!label.is_string()) BadMetadata(source, "'labels' holds a non-string");
      metadata.labels.push_back(label.text);
    }
  }
  metadata.image_batch = OptionalBatch(root, "image_batch", source);
  metadata.train_batch = OptionalBatch(root, "train_batch", source);
  metadata.bottleneck_max_norm2 = OptionalNumber(root, "bottleneck_max_norm2", source);
  ParseOptimizer(root, metadata, source);
  if (metadata.contract_version >= 3) {
    ParseVersion3Fields(root, metadata, source);   // version 3 records the range in input.range
  } else {
    metadata.image_range = OptionalRange(root, "image_range", source);
    metadata.names.output = metadata.output;       // the fixed names, with the record's output
  }
  CheckConsistent(metadata, source);
  return metadata;
}

}  // namespace tflite_transfer
