// The dataflow checks of a model whose digest was not checked (after model_structure.cc proved
// every index in range): what TFLite's kernels assume of a converter's output and crash on
// when it is false. Internal to the runtime.
#ifndef TFLITE_TRANSFER_MODEL_DATAFLOW_H_
#define TFLITE_TRANSFER_MODEL_DATAFLOW_H_

#include <string>

namespace tflite {
struct Model;
}  // namespace tflite

namespace tflite_transfer {

// Per subgraph: every op reads only tensors written before it (subgraph inputs, earlier ops'
// outputs), constants, variable tensors or tensors without elements; every tensor is written by at most one op, never a
// subgraph input or a constant; ops that only move data keep their tensors' type; variables are read and
// assigned through resource tensors, and every read and assignment of one variable has one
// shape; IF and WHILE pass their subgraphs tensors of the right number and types; reduction
// axes given as constants lie inside the input's rank. InvalidInputError naming the op.
void CheckModelDataflow(const tflite::Model& model, const std::string& source);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_DATAFLOW_H_
