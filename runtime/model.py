"""TransferModel: the personalization lifecycle on one compiled model, numpy + LiteRT only.

    model = TransferModel.open("transfer_model.tflite")
    model.add_sample(image, label)           # runs `load` once, caches the bottleneck
    model.fit(epochs=20, batch_size=16)      # `train` over the cache
    model.predict(images)                    # `infer`
    model.save_checkpoint("me.ckpt")         # `save` -> safetensors file, atomically
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from tflite_transfer.runtime import checkpoint as checkpoint_file
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.errors import CheckpointError, InvalidInputError, UnsupportedModelError
from tflite_transfer.runtime.interpreter import open_model

Progress = Callable[[str], None]


class TransferModel:
    """A compiled tflite-transfer model in the interpreter, with a cache of training samples."""

    def __init__(self, opened, source: str):
        self._opened, self._source = opened, source
        self._runners = opened.runners
        self.metadata: contract.ModelMetadata = opened.metadata
        image = self._runners["load"].get_input_details()["image"]
        self.image_shape: tuple[int, ...] = tuple(int(d) for d in image["shape_signature"][1:])
        self.image_dtype = np.dtype(image["dtype"])
        self.bottleneck_shape: tuple[int, ...] = (self.metadata.bottleneck_size,)
        self._state_spec = {entry.name: (entry.shape, entry.numpy_dtype) for entry in self.metadata.state}
        self._bottlenecks = np.zeros((0, *self.bottleneck_shape), np.float32)
        self._labels = np.zeros((0, *self._label_shape()), self._label_dtype())

    @classmethod
    def open(cls, path, num_threads: int | None = None) -> "TransferModel":
        return cls(open_model(path, num_threads), str(path) if not isinstance(path, bytes) else "<bytes>")

    # What the model is.
    @property
    def num_classes(self) -> int:
        return self.metadata.num_outputs

    @property
    def labels(self) -> list[str]:
        return list(self.metadata.labels)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self._state_spec)

    @property
    def optimizer(self) -> dict:
        return dict(self.metadata.optimizer)

    @property
    def interpreter_name(self) -> str:
        return self._opened.interpreter_name

    @property
    def classifies(self) -> bool:
        return self.metadata.label.class_ids

    # Input validation: refuse bad values before they reach the interpreter.
    def _label_shape(self) -> tuple[int, ...]:
        return () if self.classifies else (self.num_classes,)

    def _label_dtype(self):
        return np.int32 if self.classifies else np.float32

    def _images(self, images) -> np.ndarray:
        array = np.asarray(images)
        if array.ndim == len(self.image_shape):
            array = array[None]
        if array.ndim != len(self.image_shape) + 1 or tuple(array.shape[1:]) != self.image_shape:
            raise InvalidInputError(f"image: shape {list(array.shape)} does not fit the model's "
                                    f"[batch, {', '.join(map(str, self.image_shape))}]")
        if self.image_dtype.kind == "f":
            if array.dtype.kind not in "fiu":
                raise InvalidInputError(f"image: dtype {array.dtype} is not numeric")
            array = np.ascontiguousarray(array, self.image_dtype)
            if not np.isfinite(array).all():
                raise InvalidInputError("image: contains NaN or Inf")
            value_range = self.metadata.image_range
            if value_range and (array.min() < value_range[0] or array.max() > value_range[1]):
                raise InvalidInputError(
                    f"image: values span [{array.min():g}, {array.max():g}] but the base expects "
                    f"pixels in [{value_range[0]:g}, {value_range[1]:g}]")
        elif array.dtype != self.image_dtype:
            raise InvalidInputError(f"image: dtype {array.dtype}, the model takes {self.image_dtype} "
                                    "(quantized input: pass the raw pixel values)")
        return np.ascontiguousarray(array)

    def _label_array(self, labels, batch: int) -> np.ndarray:
        array = np.asarray(labels)
        if self.classifies:
            if array.ndim == 0:
                array = array[None]
            if array.dtype.kind not in "iu" or array.shape != (batch,):
                raise InvalidInputError(f"label: expected {batch} integer class ids, got "
                                        f"{array.dtype} shape {list(array.shape)}")
            bad = array[(array < 0) | (array >= self.num_classes)]
            if bad.size:
                raise InvalidInputError(f"label: {bad[0]} is outside [0, {self.num_classes})")
            return array.astype(np.int32)
        if array.ndim == 1:
            array = array[None]
        if array.shape != (batch, self.num_classes) or array.dtype.kind not in "fiu":
            raise InvalidInputError(f"label: expected float targets [{batch}, {self.num_classes}], "
                                    f"got {array.dtype} shape {list(array.shape)}")
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise InvalidInputError("label: contains NaN or Inf")
        return array

    def _bottleneck_array(self, bottlenecks) -> np.ndarray:
        array = np.asarray(bottlenecks, np.float32)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1:] != self.bottleneck_shape:
            raise InvalidInputError(f"bottleneck: shape {list(array.shape)} does not fit "
                                    f"[batch, {self.bottleneck_shape[0]}]")
        if not np.isfinite(array).all():
            raise InvalidInputError("bottleneck: contains NaN or Inf")
        return np.ascontiguousarray(array)

    # The signatures.
    def load(self, images) -> np.ndarray:
        return self._runners["load"](image=self._images(images))["bottleneck"]

    def predict(self, images) -> np.ndarray:
        return self._runners["infer"](image=self._images(images))[self.metadata.output]

    def train_step(self, images, labels) -> float:
        """One optimizer step on images (base + head in one call: `train_images`)."""
        images = self._images(images)
        labels = self._label_array(labels, len(images))
        return float(self._runners["train_images"](image=images, label=labels)["loss"][0])

    def train_bottlenecks(self, bottlenecks, labels) -> float:
        """One optimizer step on bottlenecks (`train`)."""
        bottlenecks = self._bottleneck_array(bottlenecks)
        labels = self._label_array(labels, len(bottlenecks))
        return float(self._runners["train"](bottleneck=bottlenecks, label=labels)["loss"][0])

    def set_learning_rate(self, learning_rate: float) -> None:
        if not np.isfinite(learning_rate) or learning_rate < 0:
            raise InvalidInputError(f"learning rate must be finite and >= 0, got {learning_rate}")
        self._runners["set_learning_rate"](learning_rate=np.array([learning_rate], np.float32))

    def reset(self) -> None:
        """Back to the compiled initial weights and optimizer state (the cache is kept)."""
        self._runners["initialize"]()

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: np.array(value) for name, value in self._runners["save"]().items()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Validates every tensor first, so a bad state changes nothing."""
        missing = sorted(set(self._state_spec) - set(state))
        extra = sorted(set(state) - set(self._state_spec))
        if missing or extra:
            raise InvalidInputError(f"state: missing {missing}, unexpected {extra}")
        values = {}
        for name, (shape, dtype) in self._state_spec.items():
            value = np.asarray(state[name])
            if value.shape != shape or value.dtype != dtype:
                raise InvalidInputError(f"state '{name}': {value.dtype} {list(value.shape)}, "
                                        f"expected {dtype} {list(shape)}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise InvalidInputError(f"state '{name}': contains NaN or Inf")
            # np.require keeps 0-d arrays 0-d (ascontiguousarray makes them [1], and the
            # interpreter would silently reshape the variable).
            values[name] = np.require(value, requirements="C")
        self._runners["restore"](**values)

    @property
    def steps(self) -> int:
        return int(self.get_state()["step"][0])

    # The sample cache and training over it.
    @property
    def num_samples(self) -> int:
        return len(self._labels)

    def add_sample(self, image, label) -> None:
        """Runs `load` once on the image and caches its bottleneck with the label."""
        self.add_samples(self._images(image), [label] if self.classifies else np.asarray(label)[None])

    def add_samples(self, images, labels) -> None:
        images = self._images(images)
        labels = self._label_array(labels, len(images))
        self.add_bottlenecks(self._runners["load"](image=images)["bottleneck"], labels)

    def add_bottlenecks(self, bottlenecks, labels) -> None:
        """Caches bottlenecks computed elsewhere (e.g. by `load` in another process)."""
        bottlenecks = self._bottleneck_array(bottlenecks)
        labels = self._label_array(labels, len(bottlenecks))
        self._bottlenecks = np.concatenate([self._bottlenecks, bottlenecks])
        self._labels = np.concatenate([self._labels, labels])

    def clear_samples(self) -> None:
        self._bottlenecks = self._bottlenecks[:0]
        self._labels = self._labels[:0]

    def fit(self, epochs: int = 10, batch_size: int = 32, shuffle: bool = True, seed: int = 0,
            progress: bool | Progress = True) -> list[float]:
        """Trains over the cached samples; returns the mean loss of each epoch."""
        if not self.num_samples:
            raise InvalidInputError("fit: no samples cached; call add_sample first")
        if epochs < 1 or batch_size < 1:
            raise InvalidInputError(f"fit: epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
        report = _progress_printer(progress)
        rng = np.random.default_rng(seed)
        train = self._runners["train"]
        epoch_losses = []
        for epoch in range(epochs):
            order = rng.permutation(self.num_samples) if shuffle else np.arange(self.num_samples)
            total = 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                loss = train(bottleneck=self._bottlenecks[batch], label=self._labels[batch])["loss"][0]
                total += float(loss) * len(batch)
            epoch_losses.append(total / self.num_samples)
            report(_bar(epoch + 1, epochs, epoch_losses[-1]))
        return epoch_losses

    def imprint(self) -> None:
        """Weight imprinting: sets a single-layer softmax head from the cached samples so the
        model predicts the nearest class mean, before any SGD step.

        For bottleneck x and class means mu_c, nearest-mean is argmax_c (x.mu_c - |mu_c|^2 / 2):
        a linear layer, kernel[c, :] = s * mu_c (kernels are [units, inputs]),
        bias[c] = -s * |mu_c|^2 / 2. (Unit-normalised
        means, as in Qi et al. 2018, assume normalised features; pooled MobileNet features are
        not, so the Euclidean form is used.) s scales the logits so that a sample sits ~4
        logits closer to its own class than to the average other one. Classes without a sample
        get a bias far below the others until they are trained. Optimizer slots of the head are
        zeroed; the step counter and learning rate are kept.
        """
        kernels = self.metadata.entries_with_role(contract.KERNEL)
        if not self.classifies or len(kernels) != 1:
            raise UnsupportedModelError("imprint needs a single-layer softmax head (--head=softmax)")
        if not self.num_samples:
            raise InvalidInputError("imprint: no samples cached; call add_sample first")
        kernel_name = kernels[0].name
        bias_name = next(e.name for e in self.metadata.entries_with_role(contract.BIAS) if e.layer == kernels[0].layer)
        present = np.unique(self._labels)
        means = np.stack([self._bottlenecks[self._labels == c].mean(axis=0) for c in present]).astype(np.float64)
        distances = ((self._bottlenecks[:, None, :] - means[None]) ** 2).sum(-1)
        scale = 8.0 / max(float(distances.mean()), 1e-12)
        state = self.get_state()
        kernel = np.zeros_like(state[kernel_name], dtype=np.float64)
        bias = np.zeros(self.num_classes, np.float64)
        kernel[present, :] = scale * means
        bias[present] = -scale * (means ** 2).sum(-1) / 2
        absent = np.setdiff1d(np.arange(self.num_classes), present)
        bias[absent] = bias[present].min() - 10.0 - scale * distances.max()
        state[kernel_name] = kernel.astype(np.float32)
        state[bias_name] = bias.astype(np.float32)
        for slot in self.metadata.entries_with_role(contract.SLOT):
            if slot.of in (kernel_name, bias_name):
                state[slot.name] = np.zeros_like(state[slot.name])
        self.set_state(state)

    # Checkpoints.
    def save_checkpoint(self, path) -> None:
        """Writes every variable and optimizer slot atomically (safetensors, see BUILD.md)."""
        checkpoint_file.write_checkpoint(path, self.get_state(), self.metadata.fingerprint,
                                         {"num_samples_cached": str(self.num_samples)})

    def restore_checkpoint(self, path) -> None:
        """Restores a checkpoint of this model; on any problem raises and changes nothing."""
        saved = checkpoint_file.read_checkpoint(path)
        checkpoint_file.check_compatible(saved, self._state_spec, self.metadata.fingerprint, path)
        try:
            self.set_state(saved.tensors)
        except InvalidInputError as error:
            raise CheckpointError(f"{path}: {error}") from None


def _progress_printer(progress: bool | Progress) -> Progress:
    if callable(progress):
        return progress
    if progress:
        return lambda line: print("\r" + line, end="", file=sys.stderr, flush=True)
    return lambda line: None


def _bar(epoch: int, epochs: int, loss: float, width: int = 20) -> str:
    filled = width * epoch // epochs
    end = "\n" if epoch == epochs else ""
    return f"epoch {epoch:>{len(str(epochs))}}/{epochs} [{'#' * filled}{'.' * (width - filled)}] loss {loss:.4f}{end}"
