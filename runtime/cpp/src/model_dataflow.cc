// Dataflow checks of a model whose digest was not checked. Each rule is one a converter's output
// always follows and whose violation crashed TFLite 2.14 in the digest-off fuzz campaign
// (benchmarks/fuzz/cpp_attacks.py): a heap corruption (munmap_chunk) or a SIGSEGV per rule.
#include "model_dataflow.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "errors.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "text.h"

namespace tflite_transfer {
namespace {

using Indices = flatbuffers::Vector<int32_t>;

class DataflowChecker {
 public:
  DataflowChecker(const tflite::Model& model, const std::string& source)
      : model_(model), corrupt_(Printable(source) + ": corrupt TFLite file: ") {}

  void Run() {
    for (uint32_t index = 0; index < model_.subgraphs()->size(); ++index) CheckSubgraph(index);
    CheckVariableShapes();
  }

 private:
  [[noreturn]] void Fail(const std::string& problem) const {
    throw InvalidInputError(corrupt_ + problem + "; copy or compile it again");
  }

  int32_t BuiltinOf(const tflite::Operator& op) const {
    const tflite::OperatorCode* code = model_.operator_codes()->Get(op.opcode_index());
    return std::max<int32_t>(code->deprecated_builtin_code(), code->builtin_code());
  }

  static const tflite::Tensor& TensorOf(const tflite::SubGraph& subgraph, int32_t index) {
    return *subgraph.tensors()->Get(static_cast<uint32_t>(index));
  }

  // A constant as TFLite's verifier sees one: a buffer of its own with a data vector (possibly
  // empty), or data stored after the FlatBuffer.
  bool HoldsData(const tflite::Tensor& tensor) const {
    const tflite::Buffer* buffer = tensor.buffer() ? model_.buffers()->Get(tensor.buffer()) : nullptr;
    return buffer && (buffer->data() || buffer->offset() > 1);
  }

  // No element to read (a shape [0] constant on buffer 0, as the converter writes the target of
  // a reshape to a scalar; tflite::Verify refuses it, the interpreter reads nothing from it).
  static bool IsEmpty(const tflite::Tensor& tensor) {
    return tensor.shape() && std::count(tensor.shape()->begin(), tensor.shape()->end(), 0) > 0;
  }

  bool IsConstant(const tflite::Tensor& tensor) const {
    const tflite::Buffer* buffer = tensor.buffer() ? model_.buffers()->Get(tensor.buffer()) : nullptr;
    return buffer && ((buffer->data() && buffer->data()->size()) || buffer->offset() > 1);
  }

  static std::vector<int32_t> Present(const Indices* list) {
    std::vector<int32_t> present;
    for (uint32_t index = 0; list && index < list->size(); ++index) {
      if (list->Get(index) >= 0) present.push_back(list->Get(index));
    }
    return present;
  }

  void CheckSubgraph(uint32_t index) {
    const tflite::SubGraph& subgraph = *model_.subgraphs()->Get(index);
    const std::string where = " of subgraph " + std::to_string(index);
    // An op writing a tensor another op (or the caller) also writes: one of them overwrote the
    // other's memory (munmap_chunk(): invalid pointer).
    std::set<int32_t> written;
    for (int32_t input : Present(subgraph.inputs())) written.insert(input);
    const uint32_t ops = subgraph.operators() ? subgraph.operators()->size() : 0;
    std::map<int32_t, const tflite::Operator*> producers;
    for (uint32_t position = 0; position < ops; ++position) {
      const tflite::Operator& op = *subgraph.operators()->Get(position);
      const std::string what = "op " + std::to_string(position) + where;
      // An op reading a tensor nothing has written yet read garbage through a handle (SIGSEGV);
      // TFLite's own verifier (tflite::Verify) has the same rule, its loader does not.
      for (int32_t input : Present(op.inputs())) {
        const tflite::Tensor& tensor = TensorOf(subgraph, input);
        if (!written.count(input) && !HoldsData(tensor) && !tensor.is_variable() && !IsEmpty(tensor)) {
          Fail(what + " reads tensor " + std::to_string(input) + ", which no earlier op writes");
        }
      }
      for (int32_t output : Present(op.outputs())) {
        if (!written.insert(output).second) Fail(what + " writes tensor " + std::to_string(output) + ", which is written already");
        if (IsConstant(TensorOf(subgraph, output))) Fail(what + " writes into constant tensor " + std::to_string(output));
        producers[output] = &op;
      }
      CheckTypes(subgraph, op, what);
      CheckReductionAxes(subgraph, op, what);
      NoteVariable(subgraph, op, producers, what);
    }
  }

  // Ops that only move data keep their type (a RESHAPE fed an int8 constant into a float output).
  static bool MovesData(int32_t builtin) {
    switch (builtin) {
      case tflite::BuiltinOperator_RESHAPE: case tflite::BuiltinOperator_SQUEEZE:
      case tflite::BuiltinOperator_EXPAND_DIMS: case tflite::BuiltinOperator_TRANSPOSE:
      case tflite::BuiltinOperator_CONCATENATION: case tflite::BuiltinOperator_PACK:
      case tflite::BuiltinOperator_UNPACK: case tflite::BuiltinOperator_SLICE:
      case tflite::BuiltinOperator_STRIDED_SLICE: case tflite::BuiltinOperator_TILE:
      case tflite::BuiltinOperator_PAD: case tflite::BuiltinOperator_PADV2:
      case tflite::BuiltinOperator_GATHER: case tflite::BuiltinOperator_BROADCAST_TO:
      case tflite::BuiltinOperator_REVERSE_V2: case tflite::BuiltinOperator_SPLIT_V:
        return true;
      default:
        return false;
    }
  }

  void CheckTypes(const tflite::SubGraph& subgraph, const tflite::Operator& op, const std::string& what) const {
    const int32_t builtin = BuiltinOf(op);
    const std::vector<int32_t> inputs = Present(op.inputs()), outputs = Present(op.outputs());
    if (MovesData(builtin) && !inputs.empty() && op.inputs()->Get(0) >= 0) {
      const int32_t type = TensorOf(subgraph, op.inputs()->Get(0)).type();
      std::vector<int32_t> same = outputs;
      if (builtin == tflite::BuiltinOperator_CONCATENATION || builtin == tflite::BuiltinOperator_PACK) {
        same.insert(same.end(), inputs.begin(), inputs.end());
      }
      for (int32_t tensor : same) {
        if (TensorOf(subgraph, tensor).type() != type) Fail(what + " mixes tensor types in an op that moves data");
      }
    }
    const bool uses_variable = builtin == tflite::BuiltinOperator_READ_VARIABLE ||
                               builtin == tflite::BuiltinOperator_ASSIGN_VARIABLE;
    if (uses_variable && (inputs.empty() || op.inputs()->Get(0) < 0 ||
                          TensorOf(subgraph, op.inputs()->Get(0)).type() != tflite::TensorType_RESOURCE)) {
      Fail(what + " reads or assigns a variable through a tensor that is not a resource");
    }
    if (builtin == tflite::BuiltinOperator_VAR_HANDLE &&
        (outputs.size() != 1 || TensorOf(subgraph, outputs[0]).type() != tflite::TensorType_RESOURCE)) {
      Fail(what + " makes a variable handle that is not one resource tensor");
    }
    if (builtin == tflite::BuiltinOperator_IF) {
      const auto& options = *op.builtin_options_as_IfOptions();
      for (int32_t branch : {options.then_subgraph_index(), options.else_subgraph_index()}) {
        CheckCall(subgraph, op.inputs(), 1, op.outputs(), branch, what);
      }
    }
    if (builtin == tflite::BuiltinOperator_WHILE) {
      CheckCall(subgraph, op.inputs(), 0, op.outputs(), op.builtin_options_as_WhileOptions()->body_subgraph_index(), what);
    }
  }

  // IF and WHILE hand their subgraph their inputs (after `skip` of their own) and take its
  // outputs: as many of each, of the same types (TFLite copies them byte for byte).
  void CheckCall(const tflite::SubGraph& caller, const Indices* inputs, uint32_t skip, const Indices* outputs,
                 int32_t called, const std::string& what) const {
    const tflite::SubGraph& callee = *model_.subgraphs()->Get(static_cast<uint32_t>(called));
    const std::pair<const Indices*, const Indices*> sides[] = {{inputs, callee.inputs()}, {outputs, callee.outputs()}};
    for (size_t side = 0; side < 2; ++side) {
      const Indices* mine = sides[side].first;
      const Indices* theirs = sides[side].second;
      const uint32_t offset = side == 0 ? skip : 0;
      const uint32_t count = mine && mine->size() > offset ? mine->size() - offset : 0;
      if (count != (theirs ? theirs->size() : 0)) Fail(what + " passes a subgraph the wrong number of tensors");
      for (uint32_t index = 0; index < count; ++index) {
        const int32_t tensor = mine->Get(index + offset);
        if (tensor < 0 || TensorOf(caller, tensor).type() != TensorOf(callee, theirs->Get(index)).type()) {
          Fail(what + " passes a subgraph a tensor of another type");
        }
      }
    }
  }

  // A reduction over a constant axis outside the input's rank read past the shape (SIGABRT).
  void CheckReductionAxes(const tflite::SubGraph& subgraph, const tflite::Operator& op, const std::string& what) const {
    switch (BuiltinOf(op)) {
      case tflite::BuiltinOperator_MEAN: case tflite::BuiltinOperator_SUM: case tflite::BuiltinOperator_REDUCE_MAX:
      case tflite::BuiltinOperator_REDUCE_MIN: case tflite::BuiltinOperator_REDUCE_PROD:
      case tflite::BuiltinOperator_REDUCE_ANY: case tflite::BuiltinOperator_REDUCE_ALL:
        break;
      default:
        return;
    }
    if (!op.inputs() || op.inputs()->size() < 2 || op.inputs()->Get(0) < 0 || op.inputs()->Get(1) < 0) return;
    const tflite::Tensor& input = TensorOf(subgraph, op.inputs()->Get(0));
    const tflite::Tensor& axes = TensorOf(subgraph, op.inputs()->Get(1));
    const tflite::Buffer* buffer = axes.buffer() ? model_.buffers()->Get(axes.buffer()) : nullptr;
    if (!buffer || !buffer->data() || axes.type() != tflite::TensorType_INT32 || !input.shape()) return;
    const int64_t rank = input.shape()->size();
    for (uint32_t at = 0; at + 4 <= buffer->data()->size(); at += 4) {
      int32_t axis;
      std::memcpy(&axis, buffer->data()->data() + at, 4);  // FlatBuffers are little-endian, as the data
      if (axis < -rank || axis >= rank) Fail(what + " reduces over axis " + std::to_string(axis) + " of a rank " +
                                             std::to_string(rank) + " tensor");
    }
  }

  // Variables are keyed by VAR_HANDLE's (container, shared_name); every READ_VARIABLE output and
  // ASSIGN_VARIABLE value of one variable must have one shape (a read into a tensor of another
  // shape overran it: SIGSEGV).
  void NoteVariable(const tflite::SubGraph& subgraph, const tflite::Operator& op,
                    const std::map<int32_t, const tflite::Operator*>& producers, const std::string& what) {
    const int32_t builtin = BuiltinOf(op);
    int32_t value = -1;
    if (builtin == tflite::BuiltinOperator_READ_VARIABLE && op.outputs() && op.outputs()->size()) {
      value = op.outputs()->Get(0);
    } else if (builtin == tflite::BuiltinOperator_ASSIGN_VARIABLE && op.inputs() && op.inputs()->size() > 1) {
      value = op.inputs()->Get(1);
    }
    if (value < 0) return;
    auto producer = producers.find(op.inputs()->Get(0));
    if (producer == producers.end() || BuiltinOf(*producer->second) != tflite::BuiltinOperator_VAR_HANDLE) return;
    const tflite::VarHandleOptions* options = producer->second->builtin_options_as_VarHandleOptions();
    if (!options) Fail(what + " uses a variable handle without its name");
    const std::string key = (options->container() ? options->container()->str() : "") + '\0' +
                            (options->shared_name() ? options->shared_name()->str() : "");
    const tflite::Tensor& tensor = TensorOf(subgraph, value);
    std::vector<int32_t> shape;
    for (uint32_t axis = 0; tensor.shape() && axis < tensor.shape()->size(); ++axis) {
      shape.push_back(tensor.shape()->Get(axis));
    }
    for (uint32_t axis = 0; tensor.shape_signature() && axis < tensor.shape_signature()->size(); ++axis) {
      if (tensor.shape_signature()->Get(axis) < 0) return;  // a dynamic dimension: not known here
    }
    variable_shapes_[key].emplace(std::move(shape), what);
  }

  void CheckVariableShapes() const {
    for (const auto& [key, shapes] : variable_shapes_) {
      if (shapes.size() > 1) {
        Fail(std::next(shapes.begin())->second + " reads or assigns variable " +
             Quoted(key.substr(key.find('\0') + 1)) + " with a shape it has nowhere else");
      }
    }
  }

  const tflite::Model& model_;
  const std::string corrupt_;
  std::map<std::string, std::map<std::vector<int32_t>, std::string>> variable_shapes_;  // shape -> first op
};

}  // namespace

void CheckModelDataflow(const tflite::Model& model, const std::string& source) { DataflowChecker(model, source).Run(); }

}  // namespace tflite_transfer
