"""Bounded fuzz of the compiler's other readers of user files: --labels, --head=keras:FILE
(.keras and legacy .h5) and the images of --calibration_dir, each given seeded single-bit
flips and truncations of a valid file. Each must give a result or a TransferError, never a
raw exception. (Bases: test_base_fuzz.py.)"""

from __future__ import annotations

import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflite_transfer.compiler.base import conversion
from tflite_transfer.compiler.head import heads
from tests.helpers import outcomes_of

SEED = 20261201


def damaged_copies(data: bytes, seed: int, count: int):
    """Three flips for every truncation."""
    rng = random.Random(seed)
    for index in range(count):
        if index % 4 == 3:
            size = rng.randrange(len(data))
            yield f"truncated to {size} bytes", data[:size]
        else:
            bit = rng.randrange(len(data) * 8)
            damaged = bytearray(data)
            damaged[bit // 8] ^= 1 << (bit % 8)
            yield f"bit {bit} flipped", bytes(damaged)


def test_damaged_labels_files(tmp_path):
    from tflite_transfer.compiler import user_files

    valid = "tabby cat\nbeagle\nčervená\n".encode()
    path = tmp_path / "labels.txt"

    def read(label, data):
        path.write_bytes(data)
        user_files.read_labels(str(path))

    outcomes = outcomes_of(read, damaged_copies(valid, SEED, 200))
    assert outcomes["read"] and outcomes["InvalidInputError"], dict(outcomes)


@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_damaged_keras_heads(tmp_path, suffix):
    head = keras.Sequential([keras.Input((7,)), keras.layers.Dense(5, activation="relu", name="hidden"),
                             keras.layers.Dense(3, name="scores")])
    original = tmp_path / f"head.{suffix}"
    head.save(original)
    valid = original.read_bytes()

    def read(label, data):
        path = tmp_path / f"damaged.{suffix}"
        path.write_bytes(data)
        spec = heads.build_head(f"keras:{path}", 7, 3)
        for layer in spec.layers:
            assert np.isfinite(layer.kernel).all() and np.isfinite(layer.bias).all(), label

    outcomes = outcomes_of(read, damaged_copies(valid, SEED, 120))
    assert outcomes["InvalidInputError"] + outcomes["UnsupportedModelError"] > 0, dict(outcomes)


def test_damaged_calibration_images(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    encoded = {"png": tf.io.encode_png(pixels).numpy(), "jpg": tf.io.encode_jpeg(pixels).numpy()}
    folder = tmp_path / "images"
    folder.mkdir()

    def read(label, data):
        for old in folder.iterdir():
            old.unlink()
        (folder / f"photo.{label.split(':')[0]}").write_bytes(data)
        images = conversion.load_calibration_images(str(folder), 8, 8, 4)
        assert images.shape == (1, 8, 8, 3) and np.isfinite(images).all()

    cases = [(f"{kind}: {label}", data) for kind, valid in encoded.items()
             for label, data in damaged_copies(valid, SEED, 60)]
    outcomes = outcomes_of(read, cases)
    assert outcomes["read"] and outcomes["InvalidInputError"], dict(outcomes)
