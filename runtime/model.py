"""TransferModel: the personalization lifecycle on one compiled model, numpy + LiteRT only.

    model = TransferModel.open("transfer_model.tflite")
    model.add_sample(image, label)           # runs `load` once, caches the bottleneck
    model.fit(epochs=20, batch_size=16)      # `train` over the cache
    model.predict(images)                    # `infer`
    model.save_checkpoint("me.ckpt")         # `save` -> safetensors file, atomically

Models with fixed batches (metadata `image_batch`/`train_batch`, runtime/SPEC.md#fixed-batches) are run in
chunks of that batch; `train_step`/`train_bottlenecks` then need exactly that many samples.
A base that keeps state between calls (state entries with role `base_state`, runtime/SPEC.md#stateful-bases) is one stream per model: every `load`, `predict`, `add_sample` and
`train_step` advances it by one call per chunk (never padded), `get_state`/checkpoints include
it and `reset()` rewinds it; `fit` and `imprint` work on cached bottlenecks and leave it alone.
"""

from __future__ import annotations

import collections
import math
from typing import Callable

import numpy as np

from tflite_transfer.runtime import checkpoint as checkpoint_file
from tflite_transfer.runtime import contract, inputs, samples, training_watch
from tflite_transfer.runtime.errors import InvalidInputError, TrainingDivergedError, UnsupportedModelError
from tflite_transfer.runtime.imprint import class_weights, imprinted_head
from tflite_transfer.runtime.interpreter import MetadataFacts, open_model
from tflite_transfer.runtime.progress import Progress, epoch_bar, progress_printer

# fit's defaults, chosen on three real bases (runtime/SPEC.md#training;
# benchmarks/accuracy/defaults.py): from an imprinted head, 50 epochs of batches of 32 at the
# compiled learning rate reach or beat the nearest-class-mean probe at 5 and 20 samples per class.
DEFAULT_EPOCHS = 50
DEFAULT_BATCH_SIZE = 32


class TransferModel(MetadataFacts):
    """A compiled tflite-transfer model in the interpreter, with a cache of training samples."""

    def __init__(self, opened):
        self._opened, self._source = opened, opened.source
        # Every signature run but `save` may change the state: it drops the snapshot the
        # single-step API keeps of the state after its last step (_undone_unless_finite).
        self._state_after_step: dict | None = None
        self._signatures = {name: (signature if name == contract.SAVE else _Invalidating(signature, self))
                            for name, signature in opened.signatures.items()}
        self.metadata: contract.ModelMetadata = opened.metadata
        self.names: contract.TensorNames = self.metadata.tensor_names
        self.input_spec: contract.InputSpec = inputs.input_spec(
            self.metadata, self._signatures[contract.LOAD].input_details()[self.names.input], self._source)
        self.bottleneck_shape: tuple[int, ...] = (self.metadata.bottleneck_size,)
        self._cache = samples.SampleCache(self.metadata.bottleneck_size, self.metadata.label.shape,
                                          np.dtype(self.metadata.label.dtype))
        self._stream = samples.BatchStream()
        self._step: int | None = None  # the optimizer step, tracked to refuse the int32 wrap
        self._compiled_head = self._head_weights()  # at open: the compiled initial weights

    @classmethod
    def open(cls, path, num_threads: int | None = None, verify_digest: bool = True) -> "TransferModel":
        """Opens a compiled model file (or its bytes). The file's model_digest is checked first;
        verify_digest=False skips that for apps that verified the file elsewhere."""
        return cls(open_model(path, num_threads, verify_digest))

    # What the model is.
    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample of the input, without the batch dimension."""
        return self.input_spec.shape

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input_spec.dtype)

    image_shape, image_dtype = input_shape, input_dtype   # their names before inputs of any kind

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.metadata.state_names

    @property
    def optimizer(self) -> dict:
        return dict(self.metadata.optimizer)

    @property
    def interpreter_name(self) -> str:
        return self._opened.interpreter_name

    @property
    def train_batch(self) -> int | None:
        return self.metadata.train_batch

    # Input checks (runtime/inputs.py) with this model's shapes.
    def _inputs(self, values) -> np.ndarray:
        spec = self.input_spec
        return inputs.model_input(values, self.names.input, spec.kind, spec.shape, np.dtype(spec.dtype), spec.range)

    def _label_array(self, labels, batch: int) -> np.ndarray:
        return inputs.labels(labels, batch, self.metadata.label, self.num_classes)

    def _exact_batch(self, batch: int | None, count: int, what: str) -> None:
        if batch is not None and count != batch:
            raise InvalidInputError(f"{what}: this model's signature takes exactly {batch} samples "
                                    f"per call (a fixed batch), got {count}")

    # The signatures.
    def _run_images(self, signature: str, output: str, images: np.ndarray) -> np.ndarray:
        run, name = self._signatures[signature], self.names.input
        batch = self.metadata.image_batch
        if batch is None:
            return run(**{name: images})[output]
        if len(images) % batch and self.metadata.entries_with_role(contract.BASE_STATE):
            raise InvalidInputError(
                f"this model's base keeps state between calls, advanced once per call of {batch} inputs: "
                f"pass a multiple of {batch} inputs, got {len(images)} (padding would feed the stream "
                "inputs that are not yours)")
        parts = [run(**{name: chunk})[output][:real]
                 for chunk, real in samples.image_chunks(images, batch)]
        return np.concatenate(parts)

    def load(self, images) -> np.ndarray:
        return self._run_images(contract.LOAD, self.names.bottleneck, self._inputs(images))

    def predict(self, images) -> np.ndarray:
        return self._run_images(contract.INFER, self.names.output, self._inputs(images))

    def train_step(self, images, labels) -> float:
        """One optimizer step on images (base + head in one call: `train_images`)."""
        images = self._inputs(images)
        self._exact_batch(self.metadata.image_batch, len(images), "train_step")
        labels = self._label_array(labels, len(images))
        self._check_steps_left(1)
        loss = self._undone_unless_finite(lambda: self._signatures[contract.TRAIN_IMAGES](
            **{self.names.input: images, self.names.label: labels})[self.names.loss])
        if self._step is not None:
            self._step += 1
        return loss

    def train_bottlenecks(self, bottlenecks, labels) -> float:
        """One optimizer step on bottlenecks (`train`)."""
        bottlenecks = inputs.bottlenecks(bottlenecks, self.metadata.bottleneck_size)
        self._exact_batch(self.metadata.train_batch, len(bottlenecks), "train_bottlenecks")
        labels = self._label_array(labels, len(bottlenecks))
        self._check_steps_left(1)
        return self._undone_unless_finite(lambda: self._train(bottlenecks, labels))

    def _train(self, bottlenecks: np.ndarray, labels: np.ndarray) -> np.ndarray:
        loss = self._signatures[contract.TRAIN](**{self.names.bottleneck: bottlenecks,
                                                   self.names.label: labels})[self.names.loss]
        if self._step is not None:
            self._step += 1
        return loss

    def _undone_unless_finite(self, step: Callable[[], np.ndarray]) -> float:
        """Runs one optimizer step (the single-step API; fit checks per epoch instead). If its
        loss or the weights and slots it leaves are NaN/Inf, the state from before the step is
        restored (weights, slots, step) and TrainingDivergedError raised: a failed call changes
        nothing. One `save` per call: the state after a step is kept as the next step's
        snapshot until any other signature runs (benchmarks/runtime measures the cost)."""
        before = self._state_after_step or self._signatures[contract.SAVE]()
        loss = float(step().reshape(-1)[0])
        broken = [] if np.isfinite(loss) else [f"the loss is {loss}"]
        after = self._signatures[contract.SAVE]()
        if not broken:
            names = self._non_finite_trained(after)
            broken = [f"{', '.join(names)} became NaN/Inf"] if names else []
        if broken:
            self._signatures[contract.RESTORE](**before)
            self._step = None
            raise TrainingDivergedError(
                f"training diverged: {broken[0]}; the step was undone (weights, optimizer slots and step are "
                f"as before it); lower the learning rate (set_learning_rate) or check the scale of the "
                f"inputs", [loss], self.stable_learning_rate())
        self._state_after_step = after
        return loss

    def _non_finite_trained(self, state: dict[str, np.ndarray]) -> list[str]:
        """The trained entries (not a base's own state, which may hold -inf) that hold NaN/Inf."""
        return [name for name, value in state.items() if value.dtype.kind == "f" and not np.isfinite(value).all()
                and self.metadata.state_entry(name).role != contract.BASE_STATE]

    def _steps_taken(self) -> int | None:
        if self._step is None:
            steps = self.metadata.entries_with_role(contract.STEP)
            if steps:
                self._step = int(self.get_state()[steps[0].name].reshape(-1)[0])
        return self._step

    def _check_steps_left(self, needed: int) -> None:
        taken = self._steps_taken()
        if taken is not None and taken + needed > inputs.MAX_STEP:
            raise InvalidInputError(
                f"the optimizer step counter is {taken}; {needed} more step(s) would pass "
                f"{inputs.MAX_STEP} (the int32 step wraps and Adam's update becomes NaN): "
                "save a checkpoint and call reset(), or set_state() with a smaller step")

    def set_learning_rate(self, learning_rate: float) -> None:
        """Sets the optimizer's learning rate: a finite real number in (0, 1e6]."""
        rate = inputs.learning_rate(learning_rate)
        self._signatures[contract.SET_LEARNING_RATE](
            **{contract.LEARNING_RATE: np.array([rate], np.float32)})

    def reset(self) -> None:
        """Back to the compiled initial weights and optimizer state (the cache is kept)."""
        self._signatures[contract.INITIALIZE]()
        self._step = None

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: np.array(value) for name, value in self._signatures[contract.SAVE]().items()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Validates every tensor first (form and meaning), so a bad state changes nothing."""
        values = inputs.state(state, self.metadata.state)
        self._signatures[contract.RESTORE](**values)
        self._step = None

    @property
    def steps(self) -> int:
        steps = self.metadata.entries_with_role(contract.STEP)
        return int(self.get_state()[steps[0].name].reshape(-1)[0]) if steps else 0

    # The sample cache and training over it.
    @property
    def num_samples(self) -> int:
        return len(self._cache)

    def add_sample(self, image, label) -> None:
        """Runs `load` once on the input (an image or any tensor) and caches its bottleneck with the label."""
        label = inputs.as_array(label, "label")
        self.add_samples(self._inputs(image), label[None] if label.ndim == len(self.metadata.label.shape) else label)

    def add_samples(self, images, labels) -> None:
        images = self._inputs(images)
        labels = self._label_array(labels, len(images))
        self._cache.append(self.load(images), labels)

    def add_bottlenecks(self, bottlenecks, labels) -> None:
        """Caches bottlenecks computed elsewhere (e.g. by `load` in another process)."""
        bottlenecks = inputs.bottlenecks(bottlenecks, self.metadata.bottleneck_size)
        self._cache.append(bottlenecks, self._label_array(labels, len(bottlenecks)))

    def clear_samples(self) -> None:
        self._cache.clear()
        self._stream.reset()

    def fit(self, epochs: int = DEFAULT_EPOCHS, batch_size: int = DEFAULT_BATCH_SIZE, shuffle: bool = True,
            seed: int = 0, progress: bool | Progress = True, imprint: bool | None = None) -> list[float]:
        """Trains over the cached samples; returns the mean loss of each epoch.

        imprint: None (default) imprints a single-layer softmax head first (`imprint()`, the
        nearest-class-mean start) when its kernel and bias still equal the compiled initial
        weights bit for bit (as after open or reset(), or a checkpoint of that state); True
        always imprints such a head first, False never does.
        With a fixed train batch B, `batch_size` must be B (or left at its default) and
        batches run on across epochs (module docstring of samples.py); an epoch's loss is the
        mean over the batches that ended in it (NaN if none did: fewer than B samples).
        Divergence stops training with the weights rolled back and TrainingDivergedError (a
        VerificationError) saying so in one line: a loss that becomes NaN/Inf (back to the end
        of the last good epoch), or an epoch's mean loss above 3x the best so far and above the
        starting loss (back to the best epoch; the line names the learning rate that is stable
        for the cached samples: runtime/training_watch.py).
        """
        epochs = inputs.positive_int(epochs, "fit: epochs")
        batch_size = inputs.positive_int(batch_size, "fit: batch_size")
        fixed = self.metadata.train_batch
        if fixed is not None:
            if batch_size not in (fixed, DEFAULT_BATCH_SIZE):
                raise InvalidInputError(f"fit: batch_size {batch_size}, but this model trains on "
                                        f"fixed batches of {fixed}; pass batch_size={fixed}")
            batch_size = fixed
        if not self.num_samples:
            raise InvalidInputError("fit: no samples cached; call add_sample first")
        if fixed is None:  # a batch larger than the cache is the whole cache (its buffers are that big)
            batch_size = min(batch_size, self.num_samples)
        planned = epochs * -(-self.num_samples // batch_size) + 1
        self._check_steps_left(planned)  # also bounds `epochs`: every epoch is at least one step
        if self._imprints_first(imprint):
            self.imprint()
        report = progress_printer(progress)
        good_state = self.get_state()
        watch = training_watch.LossWatch(good_state, chance_loss=math.log(self.num_classes) if self.classifies else 0.0)
        totals, counts = collections.defaultdict(float), collections.defaultdict(float)  # per epoch, as reached
        batches = self._stream.batches(self._cache, epochs, batch_size, fixed is not None,
                                       np.random.default_rng(seed), shuffle)
        epoch_losses: list[float] = []
        for batch in batches:
            while len(epoch_losses) < batch.epoch:  # epochs that ended before this batch
                epoch_losses.append(self._end_epoch(len(epoch_losses), totals, counts, epochs, report))
                good_state = self._checked_state(good_state, len(epoch_losses))
                self._watch_epoch(watch, epoch_losses, good_state)
            loss = float(self._train(batch.bottlenecks, batch.labels).reshape(-1)[0])
            if not np.isfinite(loss):
                self._roll_back(good_state, len(epoch_losses), f"the loss became {loss}", epoch_losses)
            watch.first_step(loss)
            weight = len(batch.labels) if fixed is None else 1
            totals[batch.epoch] += loss * weight
            counts[batch.epoch] += weight
        while len(epoch_losses) < epochs:
            epoch_losses.append(self._end_epoch(len(epoch_losses), totals, counts, epochs, report))
            good_state = self._checked_state(good_state, len(epoch_losses))
            self._watch_epoch(watch, epoch_losses, good_state)
        return epoch_losses

    def _head_weights(self) -> dict[str, np.ndarray]:
        names = {entry.name for role in (contract.KERNEL, contract.BIAS)
                 for entry in self.metadata.entries_with_role(role)}
        return {name: value for name, value in self.get_state().items() if name in names}

    def _imprints_first(self, imprint: bool | None) -> bool:
        """fit's imprint argument: None imprints a single-layer softmax head still at its
        compiled initial weights; True imprints such a head whatever its weights."""
        if imprint is False or not self.classifies or len(self.metadata.entries_with_role(contract.KERNEL)) != 1:
            if imprint:
                raise UnsupportedModelError("fit(imprint=True) needs a single-layer softmax head (--head=softmax)")
            return False
        if imprint:
            return True
        current = self._head_weights()
        return all(np.array_equal(current[name], value) for name, value in self._compiled_head.items())

    def stable_learning_rate(self) -> float | None:
        """The largest stable SGD/momentum learning rate for this model's head on the cached
        samples (runtime/training_watch.py states the formula); None for Adam or no samples."""
        if not self.num_samples:
            return None
        return training_watch.stable_learning_rate(
            training_watch.largest_norm2(self._cache.bottlenecks), self.metadata.loss, self.num_classes,
            str(self.metadata.optimizer.get("name")), float(self.metadata.optimizer.get("momentum") or 0.0))

    def _watch_epoch(self, watch: training_watch.LossWatch, epoch_losses: list[float], state: dict) -> None:
        """Rolls back to the best epoch and raises when this epoch's mean loss diverged."""
        epoch, loss = len(epoch_losses), epoch_losses[-1]
        if not watch.diverged(epoch, loss, state):
            return
        self._signatures[contract.RESTORE](**watch.best_state)
        self._step = None
        rates = self.metadata.entries_with_role(contract.LEARNING_RATE)
        rate = float(watch.best_state[rates[0].name].reshape(-1)[0]) if rates else None
        bound = self.stable_learning_rate()
        message = training_watch.divergence_message(
            epoch, loss, watch, rate, bound, training_watch.largest_norm2(self._cache.bottlenecks), self.num_samples)
        raise TrainingDivergedError(message, epoch_losses, bound)

    def _end_epoch(self, epoch: int, totals, counts, epochs: int, report: Progress) -> float:
        loss = float(totals[epoch] / counts[epoch]) if counts[epoch] else float("nan")
        report(epoch_bar(epoch + 1, epochs, loss))
        return loss

    def _checked_state(self, good_state: dict, epochs_done: int) -> dict:
        state = self.get_state()
        bad = self._non_finite_trained(state)
        if bad:
            self._roll_back(good_state, epochs_done - 1, f"{', '.join(bad)} became NaN/Inf")
        return state

    def _roll_back(self, good_state: dict, epochs_done: int, what: str, losses: list[float] | None = None) -> None:
        self._signatures[contract.RESTORE](**good_state)
        self._step = None
        bound = self.stable_learning_rate()
        advice = f"lower the learning rate (set_learning_rate; stable for these samples: below {bound:.3g})" \
            if bound is not None else "lower the learning rate (set_learning_rate)"
        raise TrainingDivergedError(
            f"training diverged in epoch {epochs_done + 1}: {what}; the weights were rolled back "
            f"to the end of the last good epoch; {advice} or call reset()", losses, bound)

    def imprint(self) -> None:
        """Weight imprinting (runtime/imprint.py): sets a single-layer softmax head from the cached
        samples so the model predicts the nearest class mean, before any SGD step. Optimizer
        slots of the head are zeroed; the step counter and learning rate are kept."""
        kernels = self.metadata.entries_with_role(contract.KERNEL)
        if not self.classifies or len(kernels) != 1:
            raise UnsupportedModelError("imprint needs a single-layer softmax head (--head=softmax)")
        if not self.num_samples:
            raise InvalidInputError("imprint: no samples cached; call add_sample first")
        kernel_name = kernels[0].name
        bias_name = next(entry.name for entry in self.metadata.entries_with_role(contract.BIAS)
                         if entry.layer == kernels[0].layer)
        weights = class_weights(self._cache.labels, self.metadata.label.one_hot, self.num_classes)
        state = self.get_state()
        state[kernel_name], state[bias_name] = imprinted_head(self._cache.bottlenecks, weights, self.num_classes)
        for entry in self.metadata.entries_with_role(contract.SLOT):
            if entry.of in (kernel_name, bias_name):
                state[entry.name] = np.zeros_like(state[entry.name])
        self.set_state(state)

    # Checkpoints.
    def save_checkpoint(self, path) -> None:
        """Writes every variable and optimizer slot atomically (format version 2, runtime/SPEC.md#checkpoint-file-format)."""
        checkpoint_file.write_checkpoint(path, self.get_state(), self.metadata.fingerprint,
                                         {"num_samples_cached": str(self.num_samples)})

    def restore_checkpoint(self, path, allow_version_1: bool = False) -> None:
        """Restores a checkpoint of this model; on any problem raises and changes nothing.
        Version 1 files (no checksum) only with allow_version_1=True."""
        values = checkpoint_file.read_model_state(path, self.metadata, allow_version_1)
        self._signatures[contract.RESTORE](**values)
        self._step = None


class _Invalidating:
    """A signature whose every run drops the model's kept post-step snapshot."""

    def __init__(self, signature, model: TransferModel):
        self._signature, self._model = signature, model

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self._model._state_after_step = None
        return self._signature(**inputs)

    def input_details(self) -> dict:
        return self._signature.input_details()
