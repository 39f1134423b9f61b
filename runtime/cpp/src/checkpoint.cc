// The parts of the checkpoint format both directions share: the checksum's place in the
// header, and the check that a read checkpoint fits a model.
#include <algorithm>

#include "checkpoint.h"
#include "errors.h"
#include "text.h"

namespace tflite_transfer {
namespace {

std::string Abbreviate(const std::string& fingerprint) {
  std::string shown = Printable(fingerprint);
  return shown.size() <= 12 ? shown : shown.substr(0, 12) + "\xE2\x80\xA6";
}

std::string ListNames(const std::vector<std::string>& names) {
  std::string text = std::to_string(names.size()) + (names.size() == 1 ? " tensor: " : " tensors: ");
  for (size_t index = 0; index < names.size() && index < 10; ++index) {
    if (index) text += ", ";
    text += Quoted(names[index]);
  }
  if (names.size() > 10) text += " and " + std::to_string(names.size() - 10) + " more";
  return text;
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

std::optional<size_t> ChecksumOffset(std::string_view header) {
  const std::string marker = contract::kChecksumMarker;
  constexpr size_t kDigits = contract::kDigestHexDigits;
  std::optional<size_t> found;
  for (size_t start = header.find(marker); start != std::string_view::npos;
       start = header.find(marker, start + 1)) {
    size_t digits = start + marker.size();
    if (digits + kDigits + 1 > header.size() || header[digits + kDigits] != '"' ||
        !std::all_of(header.begin() + digits, header.begin() + digits + kDigits, IsLowerHex)) {
      continue;
    }
    if (found) return std::nullopt;  // two candidates: refuse rather than guess
    found = digits;
  }
  return found;
}

std::optional<uint64_t> StateBytes(const std::vector<StateSpec>& state) {
  uint64_t total = 0;
  for (const StateSpec& spec : state) {
    std::optional<int64_t> count = NumElements(spec.shape);
    if (!count || static_cast<uint64_t>(*count) > (UINT64_MAX - total) / ItemSize(spec.dtype)) return std::nullopt;
    total += static_cast<uint64_t>(*count) * ItemSize(spec.dtype);
  }
  return total;
}

void CheckDeclaredTensors(const std::string& fingerprint, const std::vector<DeclaredTensor>& tensors,
                          const CheckpointExpectation& expected, const std::string& path) {
  std::string where = "checkpoint " + Printable(path);
  if (fingerprint != expected.model_fingerprint) {
    throw CheckpointError(where + " was written by another model (fingerprint " + Abbreviate(fingerprint) +
                          " vs " + Abbreviate(expected.model_fingerprint) + "); restore it into the model that "
                          "saved it, or start from this model's initial weights");
  }
  std::map<std::string, const DeclaredTensor*> declared;
  for (const DeclaredTensor& tensor : tensors) declared[tensor.name] = &tensor;
  std::vector<std::string> missing, unexpected;
  std::map<std::string, const StateSpec*> by_name;
  for (const StateSpec& spec : expected.state) {
    by_name[spec.name] = &spec;
    if (!declared.count(spec.name)) missing.push_back(spec.name);
  }
  for (const auto& [name, tensor] : declared) {
    if (!by_name.count(name)) unexpected.push_back(name);
  }
  std::sort(missing.begin(), missing.end());
  if (!missing.empty() || !unexpected.empty()) {
    std::string problems;
    if (!missing.empty()) problems += "missing " + ListNames(missing);
    if (!unexpected.empty()) problems += (problems.empty() ? "" : "; ") + ("unexpected " + ListNames(unexpected));
    throw CheckpointError(where + " does not hold this model's variables: " + problems);
  }
  std::string mismatches;
  for (const auto& [name, spec] : by_name) {
    const DeclaredTensor& stored = *declared.at(name);
    if (stored.shape != spec->shape || stored.dtype != spec->dtype) {
      if (!mismatches.empty()) mismatches += "; ";
      mismatches += Quoted(name) + " is " + ShapeString(stored.shape) + " " + NumpyName(stored.dtype) +
                    " in the checkpoint but " + ShapeString(spec->shape) + " " +
                    NumpyName(spec->dtype) + " in the model";
    }
  }
  if (!mismatches.empty()) throw CheckpointError(where + " does not fit the model: " + mismatches);
}

void CheckCompatible(const Checkpoint& checkpoint, const std::vector<StateSpec>& expected,
                     const std::string& model_fingerprint, const std::string& path) {
  std::vector<DeclaredTensor> tensors;
  for (const auto& [name, tensor] : checkpoint.tensors) tensors.push_back({name, tensor.dtype, tensor.shape});
  CheckDeclaredTensors(checkpoint.model_fingerprint, tensors, CheckpointExpectation{model_fingerprint, expected}, path);
}

}  // namespace tflite_transfer
