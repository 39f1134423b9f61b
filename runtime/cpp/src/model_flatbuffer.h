// The compiled model's FlatBuffer read with the official TFLite schema
// (tensorflow/lite/schema/schema_generated.h) and the FlatBuffers library, never with offsets
// copied by hand. Every reader here first runs the FlatBuffers verifier over the whole file
// (tflite::VerifyModelBuffer: every offset, vector and string inside the buffer, nesting and
// table count bounded), so a damaged file is an error, not a crash.
#ifndef TFLITE_TRANSFER_MODEL_FLATBUFFER_H_
#define TFLITE_TRANSFER_MODEL_FLATBUFFER_H_

#include <cstdint>
#include <string>
#include <vector>

namespace tflite {
struct Model;
}  // namespace tflite

namespace tflite_transfer {

// The verified model table; InvalidInputError naming `source` for anything that is not a
// valid TFLite FlatBuffer. `bytes` must outlive the result.
const tflite::Model& VerifiedModel(const std::vector<uint8_t>& bytes, const std::string& source);

// The bytes of buffer `index` (inside the FlatBuffer, or at offset/size of a model over 2 GB),
// checked against the file; InvalidInputError if the index or the range is outside it.
std::string BufferBytes(const tflite::Model& model, const std::vector<uint8_t>& bytes, uint32_t index,
                        const std::string& source);

// Cheap structure checks TFLite's loader does not do and whose absence crashes it (a
// convolution stride of 0 divides by zero): every index in range (op codes, tensors, buffers,
// subgraphs named by ops and signatures), op codes known to this schema, strides, dilations,
// filter and block sizes >= 1, shapes with non-negative dimensions of at most 2^30 elements
// that agree with their shape_signature, constant buffers of the size their shape needs,
// quantization parameters the kernels accept, external buffers inside the file. Run before
// the TFLite library sees a model whose digest was not checked (skipped, or contract version
// 1); the digest already guarantees the compiler's bytes. InvalidInputError naming the
// subgraph, op or tensor.
void CheckModelStructure(const std::vector<uint8_t>& bytes, const std::string& source);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_FLATBUFFER_H_
