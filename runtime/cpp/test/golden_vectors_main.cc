// tflite_transfer_golden GOLDEN_DIR: runs every vector of GOLDEN_DIR/vectors.json (the contract's
// rules as data, tests/golden/README.md) and of contract_v3.json (every version 3 metadata file,
// the one-hot label rows, base state that need not be finite) through this runtime and prints
// one JSON line per vector: {"group", "index", "outcome": "accepted" or the error class,
// "message", ...facts}.
// It judges nothing itself: tests/cpp/test_cpp_golden.py compares the lines with the vectors'
// expectations, so a C++ rule that disagrees with the golden files fails that test.
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <string>

#include "checkpoint.h"
#include "contract.h"
#include "demo_checks.h"
#include "errors.h"
#include "files.h"
#include "json.h"
#include "model_file.h"
#include "model_inputs.h"
#include "model_metadata_v3.h"
#include "sha256.h"
#include "transfer_model.h"

namespace tflite_transfer {
namespace {

using Facts = std::map<std::string, std::string>;  // key -> JSON value text

double NumberOf(const Json& value) {
  if (value.is_string()) {
    if (value.text == "nan") return std::numeric_limits<double>::quiet_NaN();
    return value.text == "inf" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
  }
  return *value.AsDouble();
}

const Json& At(const Json& object, const char* key) {
  const Json* value = object.Find(key);
  if (!value) throw TransferError(std::string("vectors.json: missing key '") + key + "'");
  return *value;
}

// Runs `call`; the outcome is "accepted" or the class of the project's error it threw.
std::pair<std::string, std::string> Outcome(const std::function<void()>& call) {
  try {
    call();
    return {"accepted", ""};
  } catch (const VerificationError& error) {
    return {"VerificationError", error.what()};
  } catch (const CheckpointError& error) {
    return {"CheckpointError", error.what()};
  } catch (const UnsupportedModelError& error) {
    return {"UnsupportedModelError", error.what()};
  } catch (const InvalidInputError& error) {
    return {"InvalidInputError", error.what()};
  } catch (const TransferError& error) {
    return {"TransferError", error.what()};
  }
}

void Print(const std::string& group, size_t index, const std::pair<std::string, std::string>& outcome,
           const Facts& facts = {}) {
  std::string line = "{\"group\":" + JsonQuoteAscii(group) + ",\"index\":" + std::to_string(index) +
                     ",\"outcome\":" + JsonQuoteAscii(outcome.first) + ",\"message\":" + JsonQuoteAscii(outcome.second);
  for (const auto& [key, value] : facts) line += "," + JsonQuoteAscii(key) + ":" + value;
  std::printf("%s\n", (line + "}").c_str());
}

std::string StateHashes(const TensorMap& state) {
  std::string text = "{";
  for (const auto& [name, tensor] : state) {
    text += (text.size() > 1 ? "," : "") + JsonQuoteAscii(name) + ":\"" +
            Sha256Hex(tensor.bytes.data(), tensor.bytes.size()) + "\"";
  }
  return text + "}";
}

Tensor TensorOf(const Json& vector) {
  std::optional<DType> dtype = DTypeFromNumpyName(At(vector, "dtype").text);
  Shape shape;
  for (const Json& size : At(vector, "shape").items) shape.push_back(*size.AsInt64());
  Tensor tensor = Tensor::Zeros(*dtype, shape);
  const std::vector<Json>& values = At(vector, "values").items;
  for (size_t index = 0; index < values.size(); ++index) {
    const double value = NumberOf(values[index]);
    switch (*dtype) {
      case DType::kFloat32: tensor.data<float>()[index] = static_cast<float>(value); break;
      case DType::kFloat64: tensor.data<double>()[index] = value; break;
      case DType::kInt32: tensor.data<int32_t>()[index] = static_cast<int32_t>(value); break;
      case DType::kUInt8: tensor.data<uint8_t>()[index] = static_cast<uint8_t>(value); break;
      default: throw TransferError("vectors.json: dtype " + At(vector, "dtype").text + " is not handled here");
    }
  }
  return tensor;
}

void RunInputs(const Json& inputs) {
  const Json& contexts = At(inputs, "contexts");
  const std::vector<Json>& vectors = At(inputs, "vectors").items;
  for (size_t index = 0; index < vectors.size(); ++index) {
    const Json& vector = vectors[index];
    const Json& context = At(contexts, At(vector, "context").text.c_str());
    ModelMetadata metadata;
    metadata.num_outputs = *At(context, "num_outputs").AsInt64();
    metadata.bottleneck_size = *At(context, "bottleneck_size").AsInt64();
    const Json& label = At(context, "label");
    metadata.label.kind = At(label, "kind").text;
    metadata.label.dtype = *DTypeFromNumpyName(At(label, "dtype").text);
    for (const Json& size : At(label, "shape").items) metadata.label.shape.push_back(*size.AsInt64());
    InputSpec image{kImageKind, *DTypeFromNumpyName(At(context, "image_dtype").text), {}, std::nullopt, std::nullopt};
    for (const Json& size : At(context, "image_shape").items) image.shape.push_back(*size.AsInt64());
    const Json& range = At(context, "image_range");
    image.range = std::make_pair(*range.items[0].AsDouble(), *range.items[1].AsDouble());
    const Tensor value = TensorOf(vector);
    const std::string& tensor = At(vector, "tensor").text;
    Print("inputs", index, Outcome([&] {
      if (tensor == contract::kImageTensor) {
        CheckInput(value, contract::kImageTensor, image);
      } else if (tensor == contract::kLabelTensor) {
        CheckLabels(value, *At(vector, "batch").AsInt64(), metadata);
      } else {
        CheckBottlenecks(value, metadata.bottleneck_size);
      }
    }));
  }
}

void RunModelVectors(const Json& document, const std::string& golden) {
  const Json& model = At(document, "model");
  const std::string path = golden + "/" + At(model, "file").text;
  std::unique_ptr<TransferModel> opened;
  Facts facts;
  auto outcome = Outcome([&] { opened = TransferModel::Open(path); });
  if (opened) {
    const std::vector<uint8_t> bytes = ReadableFile(path, "model").ReadAll();
    const std::optional<size_t> offset = FindModelDigest(bytes);
    facts = {{"fingerprint", JsonQuoteAscii(opened->metadata().fingerprint)},
             {"digest_checked", opened->digest_checked() ? "true" : "false"},
             {"digest_offset", offset ? std::to_string(*offset) : "null"},
             {"model_digest", offset ? "\"" + ComputeModelDigest(bytes, *offset) + "\"" : "null"},
             {"image_dtype", JsonQuoteAscii(NumpyName(opened->image_dtype()))}};
  }
  Print("model", 0, outcome, facts);
  const std::vector<Json>& files = At(document, "model_files").items;
  for (size_t index = 0; index < files.size(); ++index) {
    const std::string file = golden + "/" + At(files[index], "file").text;
    const std::vector<uint8_t> bytes = ReadableFile(file, "model").ReadAll();
    const std::optional<size_t> offset = FindModelDigest(bytes);
    Print("model_files", index, Outcome([&] { TransferModel::Open(file); }),
          {{"digest_offset", offset ? std::to_string(*offset) : "null"}});
  }
  const std::vector<Json>& strings = At(document, "digest_strings").items;
  for (size_t index = 0; index < strings.size(); ++index) {
    const std::string& hex = At(strings[index], "hex").text;
    std::vector<uint8_t> bytes;
    for (size_t at = 0; at + 1 < hex.size(); at += 2) bytes.push_back(static_cast<uint8_t>(std::stoi(hex.substr(at, 2), nullptr, 16)));
    const std::optional<size_t> offset = FindModelDigest(bytes);
    Print("digest_strings", index, {"accepted", ""},
          {{"digest_offset", offset ? std::to_string(*offset) : "null"},
           {"zeroed_sha256", offset ? "\"" + ComputeModelDigest(bytes, *offset) + "\"" : "null"}});
  }
}

void RunStateVectors(const Json& document, const std::string& golden) {
  auto model = TransferModel::Open(golden + "/" + At(At(document, "model"), "file").text);
  const std::vector<Json>& rates = At(document, "learning_rates").items;
  for (size_t index = 0; index < rates.size(); ++index) {
    model->Initialize();
    const TensorMap before = model->GetState();
    auto outcome = Outcome([&] { model->SetLearningRate(static_cast<float>(NumberOf(At(rates[index], "value")))); });
    const TensorMap after = model->GetState();
    char stored[64];
    std::snprintf(stored, sizeof stored, "%.9g", static_cast<double>(after.at(contract::kLearningRateTensor).data<float>()[0]));
    Print("learning_rates", index, outcome,
          {{"stored", stored}, {"state_unchanged", StateHashes(before) == StateHashes(after) ? "true" : "false"}});
  }
  auto with_step = [&](int64_t step) {
    model->Initialize();
    TensorMap state = model->GetState();
    state.at(contract::kStepTensor).data<int32_t>()[0] = static_cast<int32_t>(step);
    return state;
  };
  const std::vector<Json>& steps = At(document, "steps").items;
  for (size_t index = 0; index < steps.size(); ++index) {
    const TensorMap state = with_step(*At(steps[index], "value").AsInt64());
    Print("steps", index, Outcome([&] { model->SetState(state); }));
  }
  const std::vector<Json>& training = At(document, "training_steps").items;
  for (size_t index = 0; index < training.size(); ++index) {
    model->SetState(with_step(*At(training[index], "step").AsInt64()));
    Tensor bottleneck = Tensor::Zeros(DType::kFloat32, {1, model->bottleneck_size()});
    Tensor label = Tensor::Zeros(DType::kInt32, {1});
    auto outcome = Outcome([&] { model->Train(bottleneck, label); });
    const int32_t step_after = model->GetState().at(contract::kStepTensor).data<int32_t>()[0];
    Print("training_steps", index, outcome, {{"step_after", std::to_string(step_after)}});
  }
  const std::vector<Json>& checkpoints = At(document, "checkpoints").items;
  for (size_t index = 0; index < checkpoints.size(); ++index) {
    model->Initialize();
    const std::string before = StateHashes(model->GetState());
    CheckpointReadOptions options;
    options.allow_version_1 = At(checkpoints[index], "allow_version_1").boolean;
    auto outcome = Outcome([&] {
      model->RestoreCheckpoint(golden + "/" + At(checkpoints[index], "file").text, options);
    });
    const std::string after = StateHashes(model->GetState());
    Print("checkpoints", index, outcome,
          {{"state_sha256", after}, {"state_unchanged", before == after ? "true" : "false"}});
  }
}

void RunDtypeCodes(const Json& document) {
  const Json& codes = At(At(At(document, "limits"), "checkpoint"), "dtype_codes");
  size_t index = 0;
  for (const auto& [code, expected] : codes.members) {
    std::optional<DType> dtype = DTypeFromSafetensorsCode(code);
    Print("dtype_codes", index++, {dtype ? "accepted" : "unknown", ""},
          {{"code", JsonQuoteAscii(code)},
           {"numpy", dtype ? JsonQuoteAscii(NumpyName(*dtype)) : "null"},
           {"bytes", dtype ? std::to_string(ItemSize(*dtype)) : "null"}});
  }
}

Json ReadJsonFile(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadableFile(path, "golden file").ReadAll();
  return ParseJson(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// Every version 3 metadata file, parsed as a model's record: what this runtime derives from it.
void RunVersion3Files(const Json& v3, const std::string& golden) {
  size_t index = 0;
  for (const auto& [file, derived] : At(v3, "files").members) {
    std::string described = "null";
    auto outcome = Outcome([&] { described = DescribeMetadata(ReadMetadataJsonFile(golden + "/" + file)); });
    Print("v3_files", index++, outcome, {{"file", JsonQuoteAscii(file)}, {"described", described}});
  }
}

// Rows of numbers as float32 (values beyond float32, e.g. 1e39, become inf as numpy makes them).
Tensor RowsOf(const Json& rows) {
  const int64_t count = static_cast<int64_t>(rows.items.size());
  const int64_t classes = count ? static_cast<int64_t>(rows.items[0].items.size()) : 0;
  Tensor values = Tensor::Zeros(DType::kFloat64, {count, classes});
  for (int64_t row = 0; row < count; ++row) {
    for (int64_t column = 0; column < classes; ++column) {
      values.data<double>()[row * classes + column] = NumberOf(rows.items[row].items.at(column));
    }
  }
  return ConvertToFloat(values, DType::kFloat32);
}

// The one-hot label rows of contract_v3.json's rules, checked as a one-hot model's labels.
void RunOneHotRows(const Json& v3, const std::string& golden) {
  const ModelMetadata metadata = ReadMetadataJsonFile(golden + "/metadata_v3.json");
  const Json& rules = At(At(v3, "rules"), "one_hot_rows");
  size_t index = 0;
  for (const Json& rows : At(rules, "accepted").items) {
    const Tensor labels = RowsOf(rows);
    Print("one_hot_rows", index++, Outcome([&] { CheckLabels(labels, labels.shape[0], metadata); }),
          {{"reason", "\"accepted\""}});
  }
  for (const auto& [reason, rows] : At(rules, "refused").members) {
    const Tensor labels = RowsOf(rows);
    Print("one_hot_rows", index++, Outcome([&] { CheckLabels(labels, labels.shape[0], metadata); }),
          {{"reason", JsonQuoteAscii(reason)}});
  }
}

// A stateful base's own state may hold -inf and NaN (a running maximum's start); the head's not.
void RunBaseState(const Json& v3, const std::string& golden) {
  size_t index = 0;
  for (const auto& [file, derived] : At(v3, "files").members) {
    const ModelMetadata metadata = ReadMetadataJsonFile(golden + "/" + file);
    if (!metadata.stateful()) continue;
    TensorMap state;
    std::string float_base, head_bias;
    for (const StateSpec& spec : metadata.state) {
      Tensor value = Tensor::Zeros(spec.dtype, spec.shape);
      if (spec.role == contract::kRoleLearningRate) value.data<float>()[0] = 0.01f;
      if (spec.role == contract::kRoleBaseState && spec.dtype == DType::kFloat32 && float_base.empty()) {
        float_base = spec.name;
        for (int64_t i = 0; i < value.num_elements(); ++i) value.data<float>()[i] = -std::numeric_limits<float>::infinity();
        value.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
      }
      if (spec.role == contract::kRoleBias && head_bias.empty()) head_bias = spec.name;
      state.emplace(spec.name, std::move(value));
    }
    Print("base_state", index++, Outcome([&] { CheckState(state, metadata.state); }),
          {{"file", JsonQuoteAscii(file)}, {"changed", JsonQuoteAscii(float_base)}});
    state.at(head_bias).data<float>()[0] = -std::numeric_limits<float>::infinity();
    Print("base_state", index++, Outcome([&] { CheckState(state, metadata.state); }),
          {{"file", JsonQuoteAscii(file)}, {"changed", JsonQuoteAscii(head_bias)}});
  }
}

int Run(const std::string& golden) {
  const std::vector<uint8_t> bytes = ReadableFile(golden + "/vectors.json", "golden vectors").ReadAll();
  const Json document = ParseJson(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  RunDtypeCodes(document);
  RunInputs(At(document, "inputs"));
  RunModelVectors(document, golden);
  RunStateVectors(document, golden);
  const Json v3 = ReadJsonFile(golden + "/contract_v3.json");
  RunVersion3Files(v3, golden);
  RunOneHotRows(v3, golden);
  RunBaseState(v3, golden);
  return 0;
}

}  // namespace
}  // namespace tflite_transfer

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tflite_transfer_golden GOLDEN_DIR (tests/golden)\n");
    return 2;
  }
  try {
    return tflite_transfer::Run(argv[1]);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
