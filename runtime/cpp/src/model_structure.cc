// Structure checks of a model whose digest was not checked, with the TFLite schema: what the
// compiler's model reader checks (compiler/flatbuffer/model_io.py, _check_references), the op
// options whose zero value makes a kernel divide by zero, and signatures that are exactly their
// subgraph's inputs and outputs; then the dataflow checks of model_dataflow.cc. TFLite's loader
// trusts all of it; a check names the crash it prevents where one was seen
// (benchmarks/fuzz/cpp_attacks.py, "digest-off structure").
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"
#include "model_dataflow.h"
#include "model_flatbuffer.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "text.h"

namespace tflite_transfer {
namespace {

// No tensor of an on-device model comes near this; a flipped bit in a dimension does (the same
// bound as the compiler's reader).
constexpr int64_t kMaxTensorElements = int64_t{1} << 30;

class StructureChecker {
 public:
  StructureChecker(const tflite::Model& model, const std::vector<uint8_t>& bytes, const std::string& source)
      : model_(model), bytes_(bytes), corrupt_(Printable(source) + ": corrupt TFLite file: ") {}

  void Run() {
    const auto* subgraphs = model_.subgraphs();
    if (!subgraphs || subgraphs->size() == 0) Fail("it has no subgraph");
    subgraph_count_ = subgraphs->size();
    buffer_count_ = model_.buffers() ? model_.buffers()->size() : 0;
    op_code_count_ = model_.operator_codes() ? model_.operator_codes()->size() : 0;
    for (uint32_t index = 0; index < buffer_count_; ++index) CheckBuffer(index);
    for (uint32_t index = 0; index < op_code_count_; ++index) CheckOpCode(index);
    for (uint32_t index = 0; index < subgraph_count_; ++index) CheckSubgraph(index);
    CheckNoCallCycle();
    if (const auto* signatures = model_.signature_defs()) {
      for (const tflite::SignatureDef* signature : *signatures) CheckSignature(signature);
    }
    if (const auto* metadata = model_.metadata()) {
      for (const tflite::Metadata* entry : *metadata) {
        if (!entry || entry->buffer() >= buffer_count_) Fail("a metadata entry refers to a missing buffer");
      }
    }
  }

 private:
  [[noreturn]] void Fail(const std::string& problem) const {
    throw InvalidInputError(corrupt_ + problem + "; copy or compile it again");
  }

  void CheckBuffer(uint32_t index) const {
    const tflite::Buffer* buffer = model_.buffers()->Get(index);
    if (!buffer) Fail("buffer " + std::to_string(index) + " is missing");
    const uint64_t offset = buffer->offset(), size = buffer->size();
    if (offset > 1 && (offset > bytes_.size() || size > bytes_.size() - offset)) {
      Fail("buffer " + std::to_string(index) + " lies outside the file");
    }
  }

  void CheckOpCode(uint32_t index) const {
    const tflite::OperatorCode* code = model_.operator_codes()->Get(index);
    if (!code) Fail("op code " + std::to_string(index) + " is missing");
    // Codes >= 127 keep 127 in the deprecated field (files before TF 2.3 only that one): the larger counts.
    const int32_t builtin = std::max<int32_t>(code->deprecated_builtin_code(), code->builtin_code());
    if (builtin < tflite::BuiltinOperator_MIN || builtin > tflite::BuiltinOperator_MAX) {
      Fail("op code " + std::to_string(builtin) + " is no TFLite builtin this schema knows");
    }
  }

  int32_t BuiltinOf(const tflite::Operator& op) const {
    const tflite::OperatorCode* code = model_.operator_codes()->Get(op.opcode_index());
    return std::max<int32_t>(code->deprecated_builtin_code(), code->builtin_code());
  }

  template <typename Indices>
  void CheckTensorIndices(const Indices* indices, uint32_t tensors, bool optional, const std::string& what) const {
    if (!indices) return;
    for (const auto index : *indices) {
      const int64_t value = index;
      if (value >= static_cast<int64_t>(tensors) || value < (optional ? -1 : 0)) {
        Fail(what + " refers to tensor " + std::to_string(value) + ", which does not exist (" +
             std::to_string(tensors) + " tensors)");
      }
    }
  }

  void CheckSubgraph(uint32_t index) {
    caller_ = index;
    const tflite::SubGraph* subgraph = model_.subgraphs()->Get(index);
    const std::string where = "subgraph " + std::to_string(index);
    if (!subgraph) Fail(where + " is missing");
    const uint32_t tensors = subgraph->tensors() ? subgraph->tensors()->size() : 0;
    CheckTensorIndices(subgraph->inputs(), tensors, false, "an input of " + where);
    CheckTensorIndices(subgraph->outputs(), tensors, false, "an output of " + where);
    for (uint32_t position = 0; position < tensors; ++position) {
      CheckTensor(subgraph->tensors()->Get(position), "tensor " + std::to_string(position) + " of " + where);
    }
    const uint32_t ops = subgraph->operators() ? subgraph->operators()->size() : 0;
    for (uint32_t position = 0; position < ops; ++position) {
      const tflite::Operator* op = subgraph->operators()->Get(position);
      const std::string what = "op " + std::to_string(position) + " of " + where;
      if (!op) Fail(what + " is missing");
      if (op->opcode_index() >= op_code_count_) {
        Fail(what + " uses missing op code " + std::to_string(op->opcode_index()));
      }
      CheckTensorIndices(op->inputs(), tensors, true, what);
      CheckTensorIndices(op->outputs(), tensors, true, what);
      CheckTensorIndices(op->intermediates(), tensors, true, what);
      CheckOptions(*op, what);
    }
  }

  void CheckTensor(const tflite::Tensor* tensor, const std::string& where) const {
    if (!tensor) Fail(where + " is missing");
    if (tensor->buffer() >= buffer_count_) Fail(where + " refers to missing buffer " + std::to_string(tensor->buffer()));
    if (tensor->type() < tflite::TensorType_MIN || tensor->type() > tflite::TensorType_MAX) {
      Fail(where + " has unknown type " + std::to_string(tensor->type()));
    }
    int64_t elements = 1;
    const uint32_t rank = tensor->shape() ? tensor->shape()->size() : 0;
    for (uint32_t axis = 0; axis < rank; ++axis) {
      const int32_t size = tensor->shape()->Get(axis);
      if (size < 0) Fail(where + " has a negative dimension");
      elements = size == 0 || elements == 0 ? 0 : std::min(elements * size, kMaxTensorElements + 1);
      if (elements > kMaxTensorElements) Fail(where + " has more than 2^30 elements");
    }
    if (const auto* signature = tensor->shape_signature(); signature && signature->size()) {
      bool agrees = signature->size() == rank;
      for (uint32_t axis = 0; agrees && axis < rank; ++axis) {
        agrees = signature->Get(axis) == -1 || signature->Get(axis) == tensor->shape()->Get(axis);
      }
      if (!agrees) Fail(where + " has a shape_signature that disagrees with its shape");
    }
    CheckConstantSize(*tensor, elements, where);
    CheckQuantization(*tensor, rank, where);
  }

  void CheckConstantSize(const tflite::Tensor& tensor, int64_t elements, const std::string& where) const {
    const tflite::Buffer* buffer = tensor.buffer() ? model_.buffers()->Get(tensor.buffer()) : nullptr;
    if (!buffer || !buffer->data() || buffer->data()->size() == 0 || tensor.sparsity()) return;
    int64_t element_bytes = 0;
    switch (tensor.type()) {
      case tflite::TensorType_FLOAT64: case tflite::TensorType_INT64: element_bytes = 8; break;
      case tflite::TensorType_FLOAT32: case tflite::TensorType_INT32: case tflite::TensorType_UINT32:
        element_bytes = 4; break;
      case tflite::TensorType_FLOAT16: case tflite::TensorType_INT16: element_bytes = 2; break;
      case tflite::TensorType_UINT8: case tflite::TensorType_INT8: case tflite::TensorType_BOOL:
        element_bytes = 1; break;
      default: return;  // strings, int4, complex: not a plain product of the shape
    }
    if (static_cast<uint64_t>(elements * element_bytes) != buffer->data()->size()) {
      Fail(where + " needs " + std::to_string(elements * element_bytes) + " bytes, its buffer holds " +
           std::to_string(buffer->data()->size()));
    }
  }

  void CheckQuantization(const tflite::Tensor& tensor, uint32_t rank, const std::string& where) const {
    const tflite::QuantizationParameters* quantization = tensor.quantization();
    if (!quantization || !quantization->scale() || quantization->scale()->size() == 0) return;
    const auto& scales = *quantization->scale();
    for (float scale : scales) {
      if (!std::isfinite(scale) || scale < 0) Fail(where + " has a quantization scale that is not finite and >= 0");
    }
    const uint32_t zero_points = quantization->zero_point() ? quantization->zero_point()->size() : 0;
    if (zero_points != scales.size()) {
      Fail(where + " has " + std::to_string(scales.size()) + " quantization scales but " +
           std::to_string(zero_points) + " zero points");
    }
    int64_t low = std::numeric_limits<int32_t>::min(), high = std::numeric_limits<int32_t>::max();
    if (tensor.type() == tflite::TensorType_INT8) low = -128, high = 127;
    if (tensor.type() == tflite::TensorType_UINT8) low = 0, high = 255;
    if (tensor.type() == tflite::TensorType_INT16) low = -32768, high = 32767;
    for (int64_t zero_point : *quantization->zero_point()) {
      if (zero_point < low || zero_point > high) Fail(where + " has a zero point outside its type's range");
    }
    if (scales.size() > 1) {
      const int32_t axis = quantization->quantized_dimension();
      if (axis < 0 || static_cast<uint32_t>(axis) >= rank ||
          static_cast<uint32_t>(tensor.shape()->Get(static_cast<uint32_t>(axis))) != scales.size()) {
        Fail(where + " has per-channel scales that do not fit its shape");
      }
    }
  }

  void CheckSubgraphIndex(int64_t index, const std::string& what) const {
    if (index < 0 || index >= static_cast<int64_t>(subgraph_count_)) {
      Fail(what + " calls missing subgraph " + std::to_string(index));
    }
  }

  // An op of the subgraph being checked runs subgraph `index` (IF, WHILE, CALL_ONCE, CALL).
  void CheckCall(int64_t index, const std::string& what) {
    CheckSubgraphIndex(index, what);
    calls_[caller_].emplace_back(static_cast<uint32_t>(index), what);
  }

  // TFLite runs a called subgraph by recursion, so a subgraph reached again from itself
  // overflows the stack (a flipped bit that points an IF at its own subgraph: SIGSEGV).
  // Depth-first over the calls without recursion: 1 = its callees are being visited, 2 = done.
  void CheckNoCallCycle() const {
    std::vector<int> visit(subgraph_count_, 0);
    for (uint32_t root = 0; root < subgraph_count_; ++root) {
      if (visit[root] != 0) continue;
      std::vector<std::pair<uint32_t, size_t>> stack{{root, 0}};  // subgraph, next call to follow
      visit[root] = 1;
      while (!stack.empty()) {
        auto& [caller, next] = stack.back();
        const auto found = calls_.find(caller);
        if (found == calls_.end() || next == found->second.size()) {
          visit[caller] = 2;
          stack.pop_back();
          continue;
        }
        const auto& [called, what] = found->second[next++];
        if (visit[called] == 1) {
          Fail(what + " runs subgraph " + std::to_string(called) + ", which is already running (a call cycle)");
        }
        if (visit[called] == 0) {
          visit[called] = 1;
          stack.emplace_back(called, 0);
        }
      }
    }
  }

  void Positive(int64_t value, const char* field, const std::string& what) const {
    if (value < 1) Fail(what + " has " + field + " " + std::to_string(value) + " (must be >= 1)");
  }

  template <typename Options>
  const Options& Require(const Options* options, const std::string& what) const {
    if (!options) Fail(what + " lacks its options (a kernel would read zero strides)");
    return *options;
  }

  void CheckOptions(const tflite::Operator& op, const std::string& what) {
    switch (BuiltinOf(op)) {
      case tflite::BuiltinOperator_CONV_2D: {
        const auto& options = Require(op.builtin_options_as_Conv2DOptions(), what);
        Positive(options.stride_w(), "stride_w", what), Positive(options.stride_h(), "stride_h", what);
        Positive(options.dilation_w_factor(), "dilation_w_factor", what);
        Positive(options.dilation_h_factor(), "dilation_h_factor", what);
        break;
      }
      case tflite::BuiltinOperator_DEPTHWISE_CONV_2D: {
        const auto& options = Require(op.builtin_options_as_DepthwiseConv2DOptions(), what);
        Positive(options.stride_w(), "stride_w", what), Positive(options.stride_h(), "stride_h", what);
        Positive(options.dilation_w_factor(), "dilation_w_factor", what);
        Positive(options.dilation_h_factor(), "dilation_h_factor", what);
        break;
      }
      case tflite::BuiltinOperator_AVERAGE_POOL_2D: case tflite::BuiltinOperator_MAX_POOL_2D:
      case tflite::BuiltinOperator_L2_POOL_2D: {
        const auto& options = Require(op.builtin_options_as_Pool2DOptions(), what);
        Positive(options.stride_w(), "stride_w", what), Positive(options.stride_h(), "stride_h", what);
        Positive(options.filter_width(), "filter_width", what), Positive(options.filter_height(), "filter_height", what);
        break;
      }
      case tflite::BuiltinOperator_TRANSPOSE_CONV: {
        const auto& options = Require(op.builtin_options_as_TransposeConvOptions(), what);
        Positive(options.stride_w(), "stride_w", what), Positive(options.stride_h(), "stride_h", what);
        break;
      }
      case tflite::BuiltinOperator_CONV_3D: case tflite::BuiltinOperator_CONV_3D_TRANSPOSE: {
        const auto& options = Require(op.builtin_options_as_Conv3DOptions(), what);
        Positive(options.stride_d(), "stride_d", what), Positive(options.stride_w(), "stride_w", what);
        Positive(options.stride_h(), "stride_h", what);
        Positive(options.dilation_d_factor(), "dilation_d_factor", what);
        Positive(options.dilation_w_factor(), "dilation_w_factor", what);
        Positive(options.dilation_h_factor(), "dilation_h_factor", what);
        break;
      }
      case tflite::BuiltinOperator_SPACE_TO_DEPTH:
        Positive(Require(op.builtin_options_as_SpaceToDepthOptions(), what).block_size(), "block_size", what);
        break;
      case tflite::BuiltinOperator_DEPTH_TO_SPACE:
        Positive(Require(op.builtin_options_as_DepthToSpaceOptions(), what).block_size(), "block_size", what);
        break;
      case tflite::BuiltinOperator_CALL_ONCE:
        CheckCall(Require(op.builtin_options_as_CallOnceOptions(), what).init_subgraph_index(), what);
        break;
      case tflite::BuiltinOperator_IF: {
        const auto& options = Require(op.builtin_options_as_IfOptions(), what);
        CheckCall(options.then_subgraph_index(), what);
        CheckCall(options.else_subgraph_index(), what);
        break;
      }
      case tflite::BuiltinOperator_WHILE: {
        const auto& options = Require(op.builtin_options_as_WhileOptions(), what);
        CheckCall(options.cond_subgraph_index(), what);
        CheckCall(options.body_subgraph_index(), what);
        break;
      }
      case tflite::BuiltinOperator_CALL:
        CheckCall(Require(op.builtin_options_as_CallOptions(), what).subgraph(), what);
        break;
      default:
        break;
    }
  }

  // The C API sizes a signature by its subgraph's inputs and outputs but names them from the
  // SignatureDef: a signature whose tensors are not exactly those (fewer, or a name twice) made
  // TfLiteSignatureRunnerGetOutputName read past its names (SIGSEGV).
  void CheckSignature(const tflite::SignatureDef* signature) const {
    if (!signature) Fail("a signature is missing");
    const std::string what = "signature " + Quoted(signature->signature_key() ? signature->signature_key()->str() : "");
    CheckSubgraphIndex(signature->subgraph_index(), what);
    const tflite::SubGraph* subgraph = model_.subgraphs()->Get(signature->subgraph_index());
    const uint32_t tensors = subgraph->tensors() ? subgraph->tensors()->size() : 0;
    const std::pair<const flatbuffers::Vector<flatbuffers::Offset<tflite::TensorMap>>*, const flatbuffers::Vector<int32_t>*>
        sides[] = {{signature->inputs(), subgraph->inputs()}, {signature->outputs(), subgraph->outputs()}};
    for (const auto& [maps, ends] : sides) {
      std::set<std::string> names;
      std::multiset<int64_t> mapped, expected;
      if (ends) expected.insert(ends->begin(), ends->end());
      for (uint32_t index = 0; maps && index < maps->size(); ++index) {
        const tflite::TensorMap* map = maps->Get(index);
        if (!map || map->tensor_index() >= tensors) Fail(what + " refers to a missing tensor");
        if (!names.insert(map->name() ? map->name()->str() : "").second) Fail(what + " names two tensors alike");
        mapped.insert(map->tensor_index());
      }
      if (mapped != expected) Fail(what + "'s tensors are not its subgraph's inputs and outputs");
    }
  }

  const tflite::Model& model_;
  const std::vector<uint8_t>& bytes_;
  const std::string corrupt_;
  uint32_t subgraph_count_ = 0, buffer_count_ = 0, op_code_count_ = 0;
  uint32_t caller_ = 0;                                                  // the subgraph being checked
  std::map<uint32_t, std::vector<std::pair<uint32_t, std::string>>> calls_;  // caller -> (called, op)
};

}  // namespace

void CheckModelStructure(const std::vector<uint8_t>& bytes, const std::string& source) {
  const tflite::Model& model = VerifiedModel(bytes, source);
  StructureChecker(model, bytes, source).Run();
  CheckModelDataflow(model, source);  // needs every index in range: after the checks above
}

}  // namespace tflite_transfer
