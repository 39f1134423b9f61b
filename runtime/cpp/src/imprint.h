// Weight imprinting (runtime/model.py, TransferModel.imprint): sets a single-layer softmax head
// to the nearest-class-mean classifier of given samples, written as a linear layer. For class
// means mu_c, nearest-mean is argmax_c (x.mu_c - |mu_c|^2 / 2): kernel[c, :] = s * mu_c,
// bias[c] = -s * |mu_c|^2 / 2, with s = 8 / (mean squared distance of a sample to a class
// mean), so a sample sits ~4 logits closer to its own class than to an average other one.
// Class means are weighted by the label rows (a class id is a one-hot row; soft targets weigh a
// sample into several classes); classes without weight get a bias far below the others.
// float64 throughout, as the Python runtime computes it.
#ifndef TFLITE_TRANSFER_IMPRINT_H_
#define TFLITE_TRANSFER_IMPRINT_H_

#include "model_metadata.h"
#include "tensor.h"
#include "transfer_model.h"

namespace tflite_transfer {

// Whether imprint applies: a classifier (class ids or one-hot labels) with one dense layer.
bool CanImprint(const ModelMetadata& metadata);

// Imprints the head from float32 bottlenecks [n, D] and their labels (as Train takes them);
// the head's optimizer slots are zeroed, the step counter and learning rate kept. Throws
// UnsupportedModelError for another head, InvalidInputError for bad samples; nothing changes then.
void Imprint(TransferModel& model, const Tensor& bottlenecks, const Tensor& labels);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_IMPRINT_H_
