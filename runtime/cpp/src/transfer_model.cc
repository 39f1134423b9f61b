#include "transfer_model.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <set>

#include "errors.h"
#include "model_inputs.h"
#include "text.h"
// TFLite 2.14 declares the signature-runner C API in c_api_experimental.h; newer LiteRT
// releases moved it to c_api.h and keep this header, so including both works everywhere.
#include "tensorflow/lite/c/c_api.h"
#include "tensorflow/lite/c/c_api_experimental.h"

namespace tflite_transfer {
namespace {

// Collects the interpreter's messages ("Didn't find op for builtin opcode 'ADD' version '5'")
// so errors quote them instead of leaving them on stderr.
void CollectError(void* user_data, const char* format, va_list args) {
  char message[1024];
  std::vsnprintf(message, sizeof message, format, args);
  auto* errors = static_cast<std::string*>(user_data);
  if (!errors->empty()) *errors += " ";
  *errors += message;
}

std::optional<DType> FromTfLiteType(TfLiteType type) {
  switch (type) {
    case kTfLiteFloat64: return DType::kFloat64;
    case kTfLiteFloat32: return DType::kFloat32;
    case kTfLiteFloat16: return DType::kFloat16;
    case kTfLiteInt64: return DType::kInt64;
    case kTfLiteInt32: return DType::kInt32;
    case kTfLiteInt16: return DType::kInt16;
    case kTfLiteInt8: return DType::kInt8;
    case kTfLiteUInt64: return DType::kUInt64;
    case kTfLiteUInt32: return DType::kUInt32;
    case kTfLiteUInt16: return DType::kUInt16;
    case kTfLiteUInt8: return DType::kUInt8;
    case kTfLiteBool: return DType::kBool;
    default: return std::nullopt;
  }
}

Shape TensorShape(const TfLiteTensor* tensor) {
  Shape shape;
  for (int32_t axis = 0; axis < TfLiteTensorNumDims(tensor); ++axis) {
    shape.push_back(TfLiteTensorDim(tensor, axis));
  }
  return shape;
}

std::string Join(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

}  // namespace

std::vector<SignatureSpec> SignatureSpecs(const ModelMetadata& metadata) {
  std::vector<std::string> state;
  for (const StateSpec& spec : metadata.state) state.push_back(spec.name);
  return {
      {"infer", {"image"}, {metadata.output}},
      {"load", {"image"}, {"bottleneck"}},
      {"train", {"bottleneck", "label"}, {"loss"}},
      {"train_images", {"image", "label"}, {"loss"}},
      {"save", {}, state},
      {"restore", state, {"step"}},
      {"initialize", {}, {"step"}},
      {"set_learning_rate", {"learning_rate"}, {"learning_rate"}},
  };
}

const std::vector<std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>>&
SignatureContract() {
  static const auto* contract = [] {
    ModelMetadata any;  // no state, no output name: only what every model has
    auto* list = new std::vector<std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>>;
    for (SignatureSpec& spec : SignatureSpecs(any)) {
      std::vector<std::string> outputs;
      for (std::string& name : spec.outputs) {
        if (!name.empty()) outputs.push_back(std::move(name));
      }
      list->emplace_back(spec.name, std::make_pair(std::move(spec.inputs), std::move(outputs)));
    }
    return list;
  }();
  return *contract;
}

std::unique_ptr<TransferModel> TransferModel::Open(const std::string& path, const OpenOptions& options) {
  std::unique_ptr<TransferModel> model(new TransferModel());
  model->source_ = path;
  const std::string shown = Printable(path);
  ModelFile file = ReadModelFile(path, ModelFileOptions{options.verify_digest});
  model->model_bytes_ = std::move(file.bytes);
  model->metadata_ = std::move(file.metadata);
  model->digest_checked_ = file.digest_checked;

  model->model_ = TfLiteModelCreateWithErrorReporter(model->model_bytes_.data(), model->model_bytes_.size(),
                                                     CollectError, &model->errors_);
  if (!model->model_) {
    throw InvalidInputError(shown + ": TFLite cannot read the model: " + Printable(model->errors_));
  }
  TfLiteInterpreterOptions* interpreter_options = TfLiteInterpreterOptionsCreate();
  TfLiteInterpreterOptionsSetNumThreads(interpreter_options, options.num_threads);
  TfLiteInterpreterOptionsSetErrorReporter(interpreter_options, CollectError, &model->errors_);
  model->interpreter_ = TfLiteInterpreterCreate(model->model_, interpreter_options);
  TfLiteInterpreterOptionsDelete(interpreter_options);
  if (!model->interpreter_) {
    throw UnsupportedModelError(shown + ": this TFLite library (" + TfLiteVersion() +
                                ") cannot load the model: " + Printable(model->errors_));
  }

  std::set<std::string> keys;
  for (int32_t index = 0; index < TfLiteInterpreterGetSignatureCount(model->interpreter_); ++index) {
    keys.insert(TfLiteInterpreterGetSignatureKey(model->interpreter_, index));
  }
  const std::vector<SignatureSpec> specs = SignatureSpecs(model->metadata_);
  std::vector<std::string> missing;
  for (const SignatureSpec& spec : specs) {
    if (!keys.count(spec.name)) missing.push_back(spec.name);
  }
  if (!missing.empty()) {
    throw UnsupportedModelError(shown + ": not a tflite-transfer model: missing signature(s) " + Join(missing));
  }
  // Exactly the contract's names (as the compiler checks them): an extra input would be left
  // unset, an extra output means the file was built for another contract.
  for (const SignatureSpec& spec : specs) {
    TfLiteSignatureRunner* runner = TfLiteInterpreterGetSignatureRunner(model->interpreter_, spec.name.c_str());
    model->runners_[spec.name] = runner;
    std::set<std::string> have_inputs, have_outputs;
    for (size_t i = 0; i < TfLiteSignatureRunnerGetInputCount(runner); ++i) {
      have_inputs.insert(TfLiteSignatureRunnerGetInputName(runner, static_cast<int32_t>(i)));
    }
    for (size_t i = 0; i < TfLiteSignatureRunnerGetOutputCount(runner); ++i) {
      have_outputs.insert(TfLiteSignatureRunnerGetOutputName(runner, static_cast<int32_t>(i)));
    }
    std::set<std::string> need_inputs(spec.inputs.begin(), spec.inputs.end());
    std::set<std::string> need_outputs(spec.outputs.begin(), spec.outputs.end());
    if (have_inputs != need_inputs || have_outputs != need_outputs) {
      auto describe = [&](const std::set<std::string>& names) {
        std::string text = "[";
        for (const std::string& name : names) text += (text.size() > 1 ? ", " : "") + Quoted(name);
        return text + "]";
      };
      throw UnsupportedModelError(shown + ": not a tflite-transfer model: signature '" + spec.name + "' has inputs " +
                                  describe(have_inputs) + " and outputs " + describe(have_outputs) +
                                  ", the contract says " + describe(need_inputs) + " and " + describe(need_outputs));
    }
  }

  const TfLiteTensor* image = TfLiteSignatureRunnerGetInputTensor(model->runners_["load"], "image");
  std::optional<DType> image_dtype = FromTfLiteType(TfLiteTensorType(image));
  Shape image_shape = TensorShape(image);
  if (!image_dtype || image_shape.empty()) {
    throw UnsupportedModelError(shown + ": load's 'image' input has an unsupported type or shape");
  }
  model->image_dtype_ = *image_dtype;
  model->image_shape_.assign(image_shape.begin() + 1, image_shape.end());
  return model;
}

TransferModel::~TransferModel() {
  for (auto& [key, runner] : runners_) TfLiteSignatureRunnerDelete(runner);
  if (interpreter_) TfLiteInterpreterDelete(interpreter_);
  if (model_) TfLiteModelDelete(model_);
}

TfLiteSignatureRunner* TransferModel::Runner(const std::string& signature) const {
  return runners_.at(signature);
}

TensorMap TransferModel::Run(const std::string& signature,
                             const std::vector<std::pair<std::string, const Tensor*>>& inputs) {
  TfLiteSignatureRunner* runner = Runner(signature);
  errors_.clear();
  auto fail = [&](const std::string& what) {
    return TransferError(Printable(source_) + ": signature '" + signature + "': " + what +
                         (errors_.empty() ? "" : ": " + Printable(errors_)));
  };
  bool resized = false;
  for (const auto& [name, value] : inputs) {
    TfLiteTensor* tensor = TfLiteSignatureRunnerGetInputTensor(runner, name.c_str());
    std::optional<DType> dtype = FromTfLiteType(TfLiteTensorType(tensor));
    if (!dtype || *dtype != value->dtype) {
      throw InvalidInputError(Printable(source_) + ": signature '" + signature + "' input '" + name + "' is " +
                              (dtype ? NumpyName(*dtype) : "of an unsupported type") + ", got " +
                              value->Describe());
    }
    if (TensorShape(tensor) != value->shape) {
      std::vector<int> dims(value->shape.begin(), value->shape.end());
      if (TfLiteSignatureRunnerResizeInputTensor(runner, name.c_str(), dims.data(),
                                                 static_cast<int32_t>(dims.size())) != kTfLiteOk) {
        throw fail("cannot resize input '" + name + "' from " + ShapeString(TensorShape(tensor)) +
                   " to " + ShapeString(value->shape));
      }
      resized = true;
    }
  }
  // The first call of each signature also allocates; later calls only when a shape changed.
  if (resized || !allocated_.count(signature)) {
    if (TfLiteSignatureRunnerAllocateTensors(runner) != kTfLiteOk) throw fail("cannot allocate tensors");
    allocated_.insert(signature);
  }
  for (const auto& [name, value] : inputs) {
    TfLiteTensor* tensor = TfLiteSignatureRunnerGetInputTensor(runner, name.c_str());
    if (TfLiteTensorByteSize(tensor) != value->bytes.size()) {
      throw fail("input '" + name + "' takes " + std::to_string(TfLiteTensorByteSize(tensor)) +
                 " bytes, got " + value->Describe());
    }
    if (!value->bytes.empty()) std::memcpy(TfLiteTensorData(tensor), value->bytes.data(), value->bytes.size());
  }
  if (TfLiteSignatureRunnerInvoke(runner) != kTfLiteOk) throw fail("invoke failed");
  TensorMap outputs;
  for (size_t index = 0; index < TfLiteSignatureRunnerGetOutputCount(runner); ++index) {
    const char* name = TfLiteSignatureRunnerGetOutputName(runner, static_cast<int32_t>(index));
    const TfLiteTensor* tensor = TfLiteSignatureRunnerGetOutputTensor(runner, name);
    std::optional<DType> dtype = FromTfLiteType(TfLiteTensorType(tensor));
    if (!dtype) throw fail("output " + Quoted(name) + " has an unsupported type");
    Tensor value;
    value.dtype = *dtype;
    value.shape = TensorShape(tensor);
    const auto* data = static_cast<const uint8_t*>(TfLiteTensorData(tensor));
    value.bytes.assign(data, data + TfLiteTensorByteSize(tensor));
    outputs.emplace(name, std::move(value));
  }
  return outputs;
}

Tensor TransferModel::RunImagesInChunks(const std::string& signature, const std::string& output,
                                        const Tensor& images) {
  Tensor checked = CheckImages(images, image_shape_, image_dtype_);
  const int64_t count = checked.shape[0];
  const std::optional<int64_t> fixed = metadata_.FixedBatch(signature);
  if (!fixed || count == *fixed) return Run(signature, {{"image", &checked}}).at(output);
  Tensor results;
  for (int64_t begin = 0; begin < count; begin += *fixed) {
    const int64_t real = std::min(*fixed, count - begin);
    Tensor chunk = SliceRows(checked, begin, begin + real);
    // Pad with copies of the chunk's last real image: per-sample outputs, dropped below.
    const Tensor last = SliceRows(chunk, real - 1, real);
    for (int64_t padding = real; padding < *fixed; ++padding) AppendRows(chunk, last);
    AppendRows(results, SliceRows(Run(signature, {{"image", &chunk}}).at(output), 0, real));
  }
  return results;
}

Tensor TransferModel::Load(const Tensor& images) { return RunImagesInChunks("load", "bottleneck", images); }

Tensor TransferModel::Infer(const Tensor& images) { return RunImagesInChunks("infer", metadata_.output, images); }

float TransferModel::RunTrain(const std::string& signature, const std::string& input_name,
                              const Tensor& input, const Tensor& labels) {
  CheckFixedBatch(signature.c_str(), input_name.c_str(), input.shape.at(0), metadata_.FixedBatch(signature));
  CheckLabels(labels, input.shape.at(0), metadata_);
  Tensor loss = Run(signature, {{input_name, &input}, {"label", &labels}}).at("loss");
  if (loss.dtype != DType::kFloat32 || loss.num_elements() != 1) {
    throw UnsupportedModelError(Printable(source_) + ": '" + signature + "' returned loss " + loss.Describe() +
                                ", expected float32 [1]");
  }
  return loss.data<float>()[0];
}

float TransferModel::Train(const Tensor& bottlenecks, const Tensor& labels) {
  CheckBottlenecks(bottlenecks, bottleneck_size());
  return RunTrain("train", "bottleneck", bottlenecks, labels);
}

float TransferModel::TrainImages(const Tensor& images, const Tensor& labels) {
  Tensor checked = CheckImages(images, image_shape_, image_dtype_);
  return RunTrain("train_images", "image", checked, labels);
}

void TransferModel::SetLearningRate(float learning_rate) {
  CheckLearningRate(learning_rate, "learning rate");
  Tensor value = Tensor::Zeros(DType::kFloat32, {1});
  value.data<float>()[0] = learning_rate;
  Run("set_learning_rate", {{"learning_rate", &value}});
}

int32_t TransferModel::Initialize() {
  return Run("initialize", {}).at("step").data<int32_t>()[0];
}

TensorMap TransferModel::GetState() { return Run("save", {}); }

int32_t TransferModel::SetState(const TensorMap& state) {
  std::vector<std::string> missing, unexpected;
  for (const StateSpec& spec : metadata_.state) {
    if (!state.count(spec.name)) missing.push_back(spec.name);
  }
  for (const auto& [name, value] : state) {
    if (!metadata_.FindState(name)) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty()) {
    std::vector<std::string> shown_missing, shown_unexpected;
    for (const std::string& name : missing) shown_missing.push_back(Quoted(name));
    for (const std::string& name : unexpected) shown_unexpected.push_back(Quoted(name));
    throw InvalidInputError("state: missing [" + Join(shown_missing) + "], unexpected [" + Join(shown_unexpected) + "]");
  }
  std::vector<std::pair<std::string, const Tensor*>> inputs;
  for (const StateSpec& spec : metadata_.state) {
    const Tensor& value = state.at(spec.name);
    if (value.shape != spec.shape || value.dtype != spec.dtype) {
      throw InvalidInputError("state " + Quoted(spec.name) + ": " + value.Describe() + ", expected " +
                              NumpyName(spec.dtype) + " " + ShapeString(spec.shape));
    }
    if (!AllFinite(value)) throw InvalidInputError("state " + Quoted(spec.name) + ": contains NaN or Inf");
    CheckStateMeaning(spec, value);
    inputs.emplace_back(spec.name, &value);
  }
  return Run("restore", inputs).at("step").data<int32_t>()[0];
}

void TransferModel::SaveCheckpoint(const std::string& path,
                                   const std::map<std::string, std::string>& extra_metadata) {
  WriteCheckpoint(path, GetState(), metadata_.fingerprint, extra_metadata);
}

void TransferModel::RestoreCheckpoint(const std::string& path, const CheckpointReadOptions& options) {
  Checkpoint saved = ReadCheckpoint(path, options);
  CheckCompatible(saved, metadata_.state, metadata_.fingerprint, path);
  try {
    SetState(saved.tensors);
  } catch (const InvalidInputError& error) {
    throw CheckpointError("checkpoint " + Printable(path) + ": " + error.what());
  }
}

}  // namespace tflite_transfer
