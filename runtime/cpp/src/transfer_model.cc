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
  using namespace contract;  // NOLINT: the signature and tensor names, as contract.signature_specs
  std::vector<std::string> state;
  for (const StateSpec& spec : metadata.state) state.push_back(spec.name);
  return {
      {kInfer, {kImageTensor}, {metadata.output}},
      {kLoad, {kImageTensor}, {kBottleneckTensor}},
      {kTrain, {kBottleneckTensor, kLabelTensor}, {kLossTensor}},
      {kTrainImages, {kImageTensor, kLabelTensor}, {kLossTensor}},
      {kSave, {}, state},
      {kRestore, state, {kStepTensor}},
      {kInitialize, {}, {kStepTensor}},
      {kSetLearningRate, {kLearningRateTensor}, {kLearningRateTensor}},
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

  const TfLiteTensor* image = TfLiteSignatureRunnerGetInputTensor(model->runners_[contract::kLoad],
                                                                  contract::kImageTensor);
  std::optional<DType> image_dtype = FromTfLiteType(TfLiteTensorType(image));
  Shape image_shape = TensorShape(image);
  if (!image_dtype || image_shape.empty()) {
    throw UnsupportedModelError(shown + ": " + contract::kLoad + "'s '" + contract::kImageTensor +
                                "' input has an unsupported type or shape");
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
  Tensor checked = CheckImages(images, image_shape_, image_dtype_, metadata_.image_range);
  const int64_t count = checked.shape[0];
  const std::optional<int64_t> fixed = metadata_.FixedBatch(signature);
  if (!fixed || count == *fixed) return Run(signature, {{contract::kImageTensor, &checked}}).at(output);
  Tensor results;
  for (int64_t begin = 0; begin < count; begin += *fixed) {
    const int64_t real = std::min(*fixed, count - begin);
    Tensor chunk = SliceRows(checked, begin, begin + real);
    // Pad with copies of the chunk's last real image: per-sample outputs, dropped below.
    const Tensor last = SliceRows(chunk, real - 1, real);
    for (int64_t padding = real; padding < *fixed; ++padding) AppendRows(chunk, last);
    AppendRows(results, SliceRows(Run(signature, {{contract::kImageTensor, &chunk}}).at(output), 0, real));
  }
  return results;
}

Tensor TransferModel::Load(const Tensor& images) {
  return RunImagesInChunks(contract::kLoad, contract::kBottleneckTensor, images);
}

Tensor TransferModel::Infer(const Tensor& images) { return RunImagesInChunks(contract::kInfer, metadata_.output, images); }

float TransferModel::RunTrain(const std::string& signature, const std::string& input_name,
                              const Tensor& input, const Tensor& labels) {
  CheckFixedBatch(signature.c_str(), input_name.c_str(), input.shape.at(0), metadata_.FixedBatch(signature));
  CheckLabels(labels, input.shape.at(0), metadata_);
  CheckStepsLeft(StepCounter(), 1);
  Tensor loss = Run(signature, {{input_name, &input}, {contract::kLabelTensor, &labels}}).at(contract::kLossTensor);
  if (step_) ++*step_;
  if (loss.dtype != DType::kFloat32 || loss.num_elements() != 1) {
    throw UnsupportedModelError(Printable(source_) + ": '" + signature + "' returned loss " + loss.Describe() +
                                ", expected float32 [1]");
  }
  return loss.data<float>()[0];
}

float TransferModel::Train(const Tensor& bottlenecks, const Tensor& labels) {
  CheckBottlenecks(bottlenecks, bottleneck_size());
  return RunTrain(contract::kTrain, contract::kBottleneckTensor, bottlenecks, labels);
}

float TransferModel::TrainImages(const Tensor& images, const Tensor& labels) {
  Tensor checked = CheckImages(images, image_shape_, image_dtype_, metadata_.image_range);
  return RunTrain(contract::kTrainImages, contract::kImageTensor, checked, labels);
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
