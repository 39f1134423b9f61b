"""runtime/samples.py: the doubling cache, the per-epoch batch stream, fixed-batch chunks."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_transfer.runtime.samples import Batch, BatchStream, SampleCache, image_chunks


def test_cache_grows_by_doubling_and_keeps_every_sample():
    cache = SampleCache(3, (), np.int32)
    reallocations, capacity = 0, 0
    rows = []
    for index in range(5000):
        row = np.full((1, 3), index, np.float32)
        cache.append(row, np.array([index % 7], np.int32))
        rows.append(row)
        if cache._bottlenecks.shape[0] != capacity:  # a new buffer: one copy of the cache
            reallocations, capacity = reallocations + 1, cache._bottlenecks.shape[0]
    assert reallocations <= 10  # 16, 32, ..., 8192: log2, not one copy per add
    np.testing.assert_array_equal(cache.bottlenecks, np.concatenate(rows))
    np.testing.assert_array_equal(cache.labels, np.arange(5000) % 7)
    cache.append(np.zeros((3000, 3), np.float32), np.zeros(3000, np.int32))  # a big batch at once
    assert len(cache) == 8000 and cache.bottlenecks.shape == (8000, 3)
    cache.clear()
    assert len(cache) == 0 and cache.labels.shape == (0,)


def _run(stream, cache, epochs, batch, fixed, seed=0, shuffle=True):
    """The batches, copied: each is a view of a buffer the next batch overwrites."""
    return [Batch(b.bottlenecks.copy(), b.labels.copy(), b.epoch)
            for b in stream.batches(cache, epochs, batch, fixed, np.random.default_rng(seed), shuffle)]


def _cache(count):
    cache = SampleCache(2, (), np.int32)
    cache.append(np.arange(2 * count, dtype=np.float32).reshape(count, 2), np.arange(count, dtype=np.int32))
    return cache


def test_dynamic_batches_cover_each_epoch_once_with_a_short_last_batch():
    batches = _run(BatchStream(), _cache(10), epochs=3, batch=4, fixed=False)
    assert [len(b.labels) for b in batches] == [4, 4, 2] * 3
    assert [b.epoch for b in batches] == [0] * 3 + [1] * 3 + [2] * 3
    for epoch in range(3):
        seen = np.concatenate([b.labels for b in batches if b.epoch == epoch])
        assert sorted(seen) == list(range(10))
    for batch in batches:  # rows stay with their labels
        np.testing.assert_array_equal(batch.bottlenecks[:, 0], 2 * batch.labels)
    stream, buffers = BatchStream(), set()
    for batch in stream.batches(_cache(10), 3, 4, False, np.random.default_rng(0), True):
        # Contiguous views of one reused buffer: no allocation per step or per epoch.
        assert batch.bottlenecks.flags.c_contiguous and batch.bottlenecks.base is not None
        buffers.add(id(batch.bottlenecks.base))
    assert len(buffers) == 1


def test_same_order_as_a_per_epoch_permutation():
    """fit's order is documented (and used by benchmarks/few_shot.py): rng.permutation per epoch."""
    rng = np.random.default_rng(5)
    expected = np.concatenate([rng.permutation(10) for _ in range(2)])
    batches = _run(BatchStream(), _cache(10), epochs=2, batch=3, fixed=False, seed=5)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), expected)


@pytest.mark.parametrize("count, batch, epochs", [(10, 4, 3), (3, 8, 8), (16, 16, 2), (7, 1, 2)])
def test_fixed_batches_run_on_across_epochs_and_calls(count, batch, epochs):
    stream, cache = BatchStream(), _cache(count)
    seen = np.zeros(count, int)
    total = 0
    for call in range(3):  # three fit calls: leftovers of one call start the next
        for b in _run(stream, cache, epochs, batch, fixed=True, seed=call):
            assert len(b.labels) == batch  # never padded, never short
            np.add.at(seen, b.labels, 1)
            total += batch
    assert total == (3 * epochs * count) // batch * batch
    # Every sample is seen equally often, up to the one partial pass still in the stream.
    assert seen.max() - seen.min() <= 1
    assert seen.sum() + len(stream._leftover) == 3 * epochs * count


def test_fixed_batch_epoch_is_the_one_the_batch_ended_in():
    batches = _run(BatchStream(), _cache(10), epochs=2, batch=4, fixed=True, shuffle=False)
    assert [b.epoch for b in batches] == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(batches[2].labels, [8, 9, 0, 1])


def test_image_chunks_pad_with_a_real_sample():
    images = np.arange(7)[:, None] * np.ones((7, 2))
    chunks = list(image_chunks(images, 3))
    assert [real for _, real in chunks] == [3, 3, 1]
    assert all(len(chunk) == 3 for chunk, _ in chunks)
    np.testing.assert_array_equal(chunks[-1][0][:, 0], [6, 6, 6])
