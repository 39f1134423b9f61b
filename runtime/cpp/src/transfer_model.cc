#include "transfer_model.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <set>

#include "errors.h"
#include "model_inputs.h"
#include "model_metadata_v3.h"
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

// The input as the metadata describes it (version 3; checked against `load`'s input tensor) or
// as versions 1 and 2 implied it: an image in the signature's shape and dtype (inputs.input_spec).
InputSpec ResolveInputSpec(const ModelMetadata& metadata, const TfLiteTensor* tensor, const std::string& shown) {
  std::optional<DType> dtype = FromTfLiteType(TfLiteTensorType(tensor));
  Shape shape = TensorShape(tensor);
  bool sizes_ok = shape.size() >= 2;
  for (size_t axis = 1; axis < shape.size(); ++axis) sizes_ok = sizes_ok && shape[axis] >= 1;
  if (!dtype || !sizes_ok) {
    throw UnsupportedModelError(shown + ": " + contract::kLoad + "'s input " + Quoted(metadata.names.input) +
                                " has an unsupported type or shape " + ShapeString(shape) +
                                "; expected [batch, sizes >= 1]");
  }
  shape.erase(shape.begin());
  if (!metadata.input) return InputSpec{kImageKind, *dtype, shape, metadata.image_range, metadata.image_range};
  if (metadata.input->dtype != *dtype || metadata.input->shape != shape) {
    throw UnsupportedModelError(shown + ": the metadata describes the input as " + NumpyName(metadata.input->dtype) +
                                " " + ShapeString(metadata.input->shape) + " but '" + contract::kLoad + "' takes " +
                                NumpyName(*dtype) + " " + ShapeString(shape) + "; recompile the model");
  }
  return *metadata.input;
}

bool SameTensor(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
}

}  // namespace

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

  model->runners_ = CheckedRunners(model->interpreter_, SignatureSpecs(model->metadata_), shown);
  model->input_spec_ = ResolveInputSpec(
      model->metadata_, TfLiteSignatureRunnerGetInputTensor(model->runners_[contract::kLoad], model->names().input.c_str()),
      shown);
  // The compiled initial weights, for Fit's "imprint a fresh head first" (runtime/SPEC.md#training).
  for (auto& [name, value] : model->GetState()) {
    const StateSpec* spec = model->metadata_.FindState(name);
    if (spec && (spec->role == contract::kRoleKernel || spec->role == contract::kRoleBias)) {
      model->compiled_head_.emplace(name, std::move(value));
    }
  }
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

Tensor TransferModel::RunInputsInChunks(const std::string& signature, const std::string& output,
                                        const Tensor& inputs) {
  Tensor checked = CheckInput(inputs, names().input, input_spec_);
  const int64_t count = checked.shape[0];
  const std::optional<int64_t> fixed = metadata_.FixedBatch(signature);
  if (!fixed || count == *fixed) return Run(signature, {{names().input, &checked}}).at(output);
  if (count % *fixed && metadata_.stateful()) {
    throw InvalidInputError("this model's base keeps state between calls, advanced once per call of " +
                            std::to_string(*fixed) + " inputs: pass a multiple of " + std::to_string(*fixed) +
                            " inputs, got " + std::to_string(count) +
                            " (padding would feed the stream inputs that are not yours)");
  }
  Tensor results;
  for (int64_t begin = 0; begin < count; begin += *fixed) {
    const int64_t real = std::min(*fixed, count - begin);
    Tensor chunk = SliceRows(checked, begin, begin + real);
    // Pad with copies of the chunk's last real input: per-sample outputs, dropped below.
    const Tensor last = SliceRows(chunk, real - 1, real);
    for (int64_t padding = real; padding < *fixed; ++padding) AppendRows(chunk, last);
    AppendRows(results, SliceRows(Run(signature, {{names().input, &chunk}}).at(output), 0, real));
  }
  return results;
}

Tensor TransferModel::Load(const Tensor& inputs) {
  return RunInputsInChunks(contract::kLoad, names().bottleneck, inputs);
}

Tensor TransferModel::Infer(const Tensor& inputs) { return RunInputsInChunks(contract::kInfer, metadata_.output, inputs); }

float TransferModel::RunTrain(const std::string& signature, const std::string& input_name,
                              const Tensor& input, const Tensor& labels) {
  CheckFixedBatch(signature.c_str(), input_name.c_str(), input.shape.at(0), metadata_.FixedBatch(signature));
  CheckLabels(labels, input.shape.at(0), metadata_);
  CheckStepsLeft(StepCounter(), 1);
  Tensor loss = Run(signature, {{input_name, &input}, {names().label, &labels}}).at(names().loss);
  if (step_) ++*step_;
  if (loss.dtype != DType::kFloat32 || loss.num_elements() != 1) {
    throw UnsupportedModelError(Printable(source_) + ": '" + signature + "' returned loss " + loss.Describe() +
                                ", expected float32 [1]");
  }
  return loss.data<float>()[0];
}

float TransferModel::Train(const Tensor& bottlenecks, const Tensor& labels) {
  CheckBottlenecks(bottlenecks, bottleneck_size());
  return RunTrain(contract::kTrain, names().bottleneck, bottlenecks, labels);
}

float TransferModel::TrainImages(const Tensor& inputs, const Tensor& labels) {
  Tensor checked = CheckInput(inputs, names().input, input_spec_);
  return RunTrain(contract::kTrainImages, names().input, checked, labels);
}

int64_t TransferModel::StepCounter() {
  if (!step_) {
    for (const StateSpec& spec : metadata_.state) {
      if (spec.role != contract::kRoleStep) continue;
      const Tensor value = GetState().at(spec.name);
      step_ = value.dtype == DType::kInt32 && value.num_elements() ? value.data<int32_t>()[0] : 0;
    }
  }
  return step_.value_or(0);
}

void TransferModel::SetLearningRate(float learning_rate) {
  CheckLearningRate(learning_rate, "learning rate");
  Tensor value = Tensor::Zeros(DType::kFloat32, {1});
  value.data<float>()[0] = learning_rate;
  Run(contract::kSetLearningRate, {{contract::kLearningRateTensor, &value}});
}

int32_t TransferModel::Initialize() {
  step_.reset();
  return Run(contract::kInitialize, {}).at(contract::kStepTensor).data<int32_t>()[0];
}

TensorMap TransferModel::GetState() { return Run(contract::kSave, {}); }

int32_t TransferModel::SetState(const TensorMap& state) {
  CheckState(state, metadata_.state);
  std::vector<std::pair<std::string, const Tensor*>> inputs;
  for (const StateSpec& spec : metadata_.state) inputs.emplace_back(spec.name, &state.at(spec.name));
  step_.reset();
  return Run(contract::kRestore, inputs).at(contract::kStepTensor).data<int32_t>()[0];
}

bool TransferModel::HeadHoldsCompiledWeights() {
  const TensorMap state = GetState();
  for (const auto& [name, value] : compiled_head_) {
    auto found = state.find(name);
    if (found == state.end() || !SameTensor(found->second, value)) return false;
  }
  return true;
}

void TransferModel::SaveCheckpoint(const std::string& path,
                                   const std::map<std::string, std::string>& extra_metadata) {
  WriteCheckpoint(path, GetState(), metadata_.fingerprint, extra_metadata);
}

void TransferModel::RestoreCheckpoint(const std::string& path, const CheckpointReadOptions& options) {
  Checkpoint saved = ReadCheckpointFor(path, CheckpointExpectation{metadata_.fingerprint, metadata_.state}, options);
  try {
    SetState(saved.tensors);
  } catch (const InvalidInputError& error) {
    throw CheckpointError("checkpoint " + Printable(path) + ": " + error.what());
  }
}

}  // namespace tflite_transfer
