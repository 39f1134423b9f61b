// The signatures of a compiled model by the model's own tensor names (contract.signature_specs),
// and the check at open that the interpreter's signatures are exactly those.
#ifndef TFLITE_TRANSFER_MODEL_SIGNATURES_H_
#define TFLITE_TRANSFER_MODEL_SIGNATURES_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "model_metadata.h"

struct TfLiteInterpreter;
struct TfLiteSignatureRunner;

namespace tflite_transfer {

// The exact input and output names of one signature (contract.signature_specs).
struct SignatureSpec {
  std::string name;
  std::vector<std::string> inputs, outputs;
};

// Every signature of a compiled model with this metadata, in the contract's order, with the
// model's tensor names (metadata.names: its own in version 3, the fixed names before).
std::vector<SignatureSpec> SignatureSpecs(const ModelMetadata& metadata);

// The metadata-independent part, for callers that list the signatures (kept for code written
// against the first version of this API): signature -> (inputs, outputs) with the default names
// and without the state names and infer's output name. Prefer SignatureSpecs(model.metadata()).
const std::vector<std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>>&
SignatureContract();

// The interpreter's runner of every signature `specs` lists, after checking each has exactly
// those input and output names (an extra input would be left unset, an extra output means the
// file was built for another contract); UnsupportedModelError naming `shown` otherwise. The
// caller deletes the runners.
std::map<std::string, TfLiteSignatureRunner*> CheckedRunners(TfLiteInterpreter* interpreter,
                                                             const std::vector<SignatureSpec>& specs,
                                                             const std::string& shown);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_SIGNATURES_H_
