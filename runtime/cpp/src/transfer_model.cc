#include "transfer_model.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

#include "errors.h"
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

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InvalidInputError("model file '" + path + "' not found or not readable");
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

bool AllFinite(const Tensor& tensor) {
  if (tensor.dtype == DType::kFloat32) {
    const float* values = tensor.data<float>();
    for (int64_t index = 0; index < tensor.num_elements(); ++index) {
      if (!std::isfinite(values[index])) return false;
    }
  } else if (tensor.dtype == DType::kFloat64) {
    const double* values = tensor.data<double>();
    for (int64_t index = 0; index < tensor.num_elements(); ++index) {
      if (!std::isfinite(values[index])) return false;
    }
  }
  return true;
}

}  // namespace

const std::vector<std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>>&
SignatureContract() {
  static const auto* contract = new std::vector<
      std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>>{
      {"infer", {{"image"}, {}}},
      {"load", {{"image"}, {"bottleneck"}}},
      {"train", {{"bottleneck", "label"}, {"loss"}}},
      {"train_images", {{"image", "label"}, {"loss"}}},
      {"save", {{}, {}}},
      {"restore", {{}, {"step"}}},
      {"initialize", {{}, {"step"}}},
      {"set_learning_rate", {{"learning_rate"}, {"learning_rate"}}},
  };
  return *contract;
}

std::unique_ptr<TransferModel> TransferModel::Open(const std::string& path, int num_threads) {
  std::unique_ptr<TransferModel> model(new TransferModel());
  model->source_ = path;
  model->model_bytes_ = ReadFile(path);
  model->metadata_ = ReadModelMetadata(model->model_bytes_, path);

  model->model_ = TfLiteModelCreateWithErrorReporter(model->model_bytes_.data(), model->model_bytes_.size(),
                                                     CollectError, &model->errors_);
  if (!model->model_) {
    throw InvalidInputError(path + ": TFLite cannot read the model: " + model->errors_);
  }
  TfLiteInterpreterOptions* options = TfLiteInterpreterOptionsCreate();
  TfLiteInterpreterOptionsSetNumThreads(options, num_threads);
  TfLiteInterpreterOptionsSetErrorReporter(options, CollectError, &model->errors_);
  model->interpreter_ = TfLiteInterpreterCreate(model->model_, options);
  TfLiteInterpreterOptionsDelete(options);
  if (!model->interpreter_) {
    throw UnsupportedModelError(path + ": this TFLite library (" + TfLiteVersion() +
                                ") cannot load the model: " + model->errors_);
  }

  std::set<std::string> keys;
  for (int32_t index = 0; index < TfLiteInterpreterGetSignatureCount(model->interpreter_); ++index) {
    keys.insert(TfLiteInterpreterGetSignatureKey(model->interpreter_, index));
  }
  std::vector<std::string> missing;
  for (const auto& [key, names] : SignatureContract()) {
    if (!keys.count(key)) missing.push_back(key);
  }
  if (!missing.empty()) {
    throw UnsupportedModelError(path + ": not a tflite-transfer model: missing signature(s) " + Join(missing));
  }
  std::vector<std::string> state_names;
  for (const StateSpec& spec : model->metadata_.state) state_names.push_back(spec.name);
  for (const auto& [key, names] : SignatureContract()) {
    TfLiteSignatureRunner* runner = TfLiteInterpreterGetSignatureRunner(model->interpreter_, key.c_str());
    model->runners_[key] = runner;
    std::set<std::string> have_inputs, have_outputs;
    for (size_t i = 0; i < TfLiteSignatureRunnerGetInputCount(runner); ++i) {
      have_inputs.insert(TfLiteSignatureRunnerGetInputName(runner, static_cast<int32_t>(i)));
    }
    for (size_t i = 0; i < TfLiteSignatureRunnerGetOutputCount(runner); ++i) {
      have_outputs.insert(TfLiteSignatureRunnerGetOutputName(runner, static_cast<int32_t>(i)));
    }
    std::vector<std::string> need_inputs = names.first, need_outputs = names.second;
    if (key == "restore") need_inputs.insert(need_inputs.end(), state_names.begin(), state_names.end());
    if (key == "save") need_outputs.insert(need_outputs.end(), state_names.begin(), state_names.end());
    std::set<std::string> absent;
    for (const std::string& name : need_inputs) if (!have_inputs.count(name)) absent.insert(name);
    for (const std::string& name : need_outputs) if (!have_outputs.count(name)) absent.insert(name);
    if (!absent.empty()) {
      throw UnsupportedModelError(path + ": not a tflite-transfer model: signature '" + key + "' lacks " +
                                  Join({absent.begin(), absent.end()}));
    }
  }

  const TfLiteTensor* image = TfLiteSignatureRunnerGetInputTensor(model->runners_["load"], "image");
  std::optional<DType> image_dtype = FromTfLiteType(TfLiteTensorType(image));
  Shape image_shape = TensorShape(image);
  if (!image_dtype || image_shape.empty()) {
    throw UnsupportedModelError(path + ": load's 'image' input has an unsupported type or shape");
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
    return TransferError(source_ + ": signature '" + signature + "': " + what +
                         (errors_.empty() ? "" : ": " + errors_));
  };
  bool resized = false;
  for (const auto& [name, value] : inputs) {
    TfLiteTensor* tensor = TfLiteSignatureRunnerGetInputTensor(runner, name.c_str());
    std::optional<DType> dtype = FromTfLiteType(TfLiteTensorType(tensor));
    if (!dtype || *dtype != value->dtype) {
      throw InvalidInputError(source_ + ": signature '" + signature + "' input '" + name + "' is " +
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
    if (!dtype) throw fail(std::string("output '") + name + "' has an unsupported type");
    Tensor value;
    value.dtype = *dtype;
    value.shape = TensorShape(tensor);
    const auto* data = static_cast<const uint8_t*>(TfLiteTensorData(tensor));
    value.bytes.assign(data, data + TfLiteTensorByteSize(tensor));
    outputs.emplace(name, std::move(value));
  }
  return outputs;
}

Tensor TransferModel::CheckImages(const Tensor& images) const {
  if (images.shape.size() != image_shape_.size() + 1 ||
      !std::equal(image_shape_.begin(), image_shape_.end(), images.shape.begin() + 1)) {
    throw InvalidInputError("image: shape " + ShapeString(images.shape) + " does not fit the model's [batch, " +
                            ShapeString(image_shape_).substr(1));
  }
  if (images.dtype == image_dtype_) {
    if (!AllFinite(images)) throw InvalidInputError("image: contains NaN or Inf");
    return images;
  }
  if (image_dtype_ != DType::kFloat32) {
    throw InvalidInputError(std::string("image: dtype ") + NumpyName(images.dtype) + ", the model takes " +
                            NumpyName(image_dtype_) + " (quantized input: pass the raw pixel values)");
  }
  // A float model takes any numeric pixels, converted to float32 as the Python runtime does.
  Tensor converted = Tensor::Zeros(DType::kFloat32, images.shape);
  float* out = converted.data<float>();
  for (int64_t index = 0; index < images.num_elements(); ++index) {
    switch (images.dtype) {
      case DType::kFloat64: out[index] = static_cast<float>(images.data<double>()[index]); break;
      case DType::kUInt8: out[index] = images.data<uint8_t>()[index]; break;
      case DType::kInt8: out[index] = images.data<int8_t>()[index]; break;
      case DType::kInt32: out[index] = static_cast<float>(images.data<int32_t>()[index]); break;
      case DType::kInt64: out[index] = static_cast<float>(images.data<int64_t>()[index]); break;
      default:
        throw InvalidInputError(std::string("image: dtype ") + NumpyName(images.dtype) + " is not supported");
    }
  }
  if (!AllFinite(converted)) throw InvalidInputError("image: contains NaN or Inf");
  return converted;
}

void TransferModel::CheckLabels(const Tensor& labels, int64_t batch) const {
  if (metadata_.classifies()) {
    if (labels.dtype != DType::kInt32 || labels.shape != Shape{batch}) {
      throw InvalidInputError("label: expected " + std::to_string(batch) + " int32 class ids, got " +
                              labels.Describe());
    }
    for (int64_t index = 0; index < batch; ++index) {
      int32_t label = labels.data<int32_t>()[index];
      if (label < 0 || label >= num_classes()) {
        throw InvalidInputError("label: " + std::to_string(label) + " is outside [0, " +
                                std::to_string(num_classes()) + ")");
      }
    }
    return;
  }
  if (labels.dtype != DType::kFloat32 || labels.shape != Shape{batch, num_classes()}) {
    throw InvalidInputError("label: expected float32 targets [" + std::to_string(batch) + ", " +
                            std::to_string(num_classes()) + "], got " + labels.Describe());
  }
  if (!AllFinite(labels)) throw InvalidInputError("label: contains NaN or Inf");
}

Tensor TransferModel::Load(const Tensor& images) {
  Tensor checked = CheckImages(images);
  return Run("load", {{"image", &checked}}).at("bottleneck");
}

Tensor TransferModel::Infer(const Tensor& images) {
  Tensor checked = CheckImages(images);
  return Run("infer", {{"image", &checked}}).at(metadata_.output);
}

float TransferModel::RunTrain(const std::string& signature, const std::string& input_name,
                              const Tensor& input, const Tensor& labels) {
  CheckLabels(labels, input.shape.at(0));
  Tensor loss = Run(signature, {{input_name, &input}, {"label", &labels}}).at("loss");
  if (loss.dtype != DType::kFloat32 || loss.num_elements() != 1) {
    throw UnsupportedModelError(source_ + ": '" + signature + "' returned loss " + loss.Describe() +
                                ", expected float32 [1]");
  }
  return loss.data<float>()[0];
}

float TransferModel::Train(const Tensor& bottlenecks, const Tensor& labels) {
  if (bottlenecks.dtype != DType::kFloat32 || bottlenecks.shape.size() != 2 ||
      bottlenecks.shape[1] != bottleneck_size()) {
    throw InvalidInputError("bottleneck: " + bottlenecks.Describe() + " does not fit float32 [batch, " +
                            std::to_string(bottleneck_size()) + "]");
  }
  if (!AllFinite(bottlenecks)) throw InvalidInputError("bottleneck: contains NaN or Inf");
  return RunTrain("train", "bottleneck", bottlenecks, labels);
}

float TransferModel::TrainImages(const Tensor& images, const Tensor& labels) {
  Tensor checked = CheckImages(images);
  return RunTrain("train_images", "image", checked, labels);
}

void TransferModel::SetLearningRate(float learning_rate) {
  if (!std::isfinite(learning_rate) || learning_rate < 0) {
    throw InvalidInputError("learning rate must be finite and >= 0, got " + std::to_string(learning_rate));
  }
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
    throw InvalidInputError("state: missing [" + Join(missing) + "], unexpected [" + Join(unexpected) + "]");
  }
  std::vector<std::pair<std::string, const Tensor*>> inputs;
  for (const StateSpec& spec : metadata_.state) {
    const Tensor& value = state.at(spec.name);
    if (value.shape != spec.shape || value.dtype != spec.dtype) {
      throw InvalidInputError("state '" + spec.name + "': " + value.Describe() + ", expected " +
                              NumpyName(spec.dtype) + " " + ShapeString(spec.shape));
    }
    if (!AllFinite(value)) throw InvalidInputError("state '" + spec.name + "': contains NaN or Inf");
    inputs.emplace_back(spec.name, &value);
  }
  return Run("restore", inputs).at("step").data<int32_t>()[0];
}

void TransferModel::SaveCheckpoint(const std::string& path,
                                   const std::map<std::string, std::string>& extra_metadata) {
  WriteCheckpoint(path, GetState(), metadata_.fingerprint, extra_metadata);
}

void TransferModel::RestoreCheckpoint(const std::string& path) {
  Checkpoint saved = ReadCheckpoint(path);
  CheckCompatible(saved, metadata_.state, metadata_.fingerprint, path);
  try {
    SetState(saved.tensors);
  } catch (const InvalidInputError& error) {
    throw CheckpointError(path + ": " + error.what());
  }
}

}  // namespace tflite_transfer
