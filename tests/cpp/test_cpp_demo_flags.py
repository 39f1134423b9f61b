"""The C++ demo's numbers and training data: an --epochs too large for any integer used to become
2^63 - 1 silently, and an empty training file trained on nothing without a word. Both are one
error line now, as is a plan that would pass the step counter's bound."""

from __future__ import annotations

import numpy as np

from tests.fixtures.cpp_runtime import assert_one_error_line, run_demo
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.checkpoint import read_checkpoint, write_checkpoint


def usage_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_out_of_range_integers_are_refused(cpp_demo, tiny_v2_model_path):
    for flag, value in [("--epochs", "99999999999999999999"), ("--epochs", "-1"), ("--epochs", str(2**31)),
                        ("--batch_size", "0"), ("--batch_size", "1e3"), ("--num_threads", "99999999999999999999"),
                        ("--shuffle_seed", "-5")]:
        result = run_demo(cpp_demo, "--model", tiny_v2_model_path, flag, value, expect_ok=False)
        usage_error(result, f"{flag} must be an integer from", f"got '{value}'")
    # The bound itself parses (the refusal that follows is about the missing training data).
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--epochs", str(contract.MAX_STEP), expect_ok=False)
    usage_error(result, "needs --labels")


def test_an_empty_training_file_is_refused(cpp_demo, tiny_v2_model_path, tmp_path):
    np.save(tmp_path / "bottlenecks.npy", np.zeros((0, 7), np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(0, np.int64))
    checkpoint = tmp_path / "out.ckpt"
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--bottlenecks", tmp_path / "bottlenecks.npy",
                      "--labels", tmp_path / "labels.npy", "--epochs", 3, "--checkpoint", checkpoint, expect_ok=False)
    assert_one_error_line(result, "--bottlenecks", "holds no samples", "[0, 7]")
    assert not checkpoint.exists()
    result = run_demo(cpp_demo, "--model", tiny_v2_model_path, "--bottlenecks", tmp_path / "bottlenecks.npy",
                      "--labels", tmp_path / "labels.npy", "--epochs", 0)
    assert result.returncode == 0  # nothing asked, nothing refused


def test_a_plan_past_the_step_bound_is_refused_before_training(cpp_demo, tiny_v2_model_path, tmp_path):
    start = tmp_path / "start.ckpt"
    run_demo(cpp_demo, "--model", tiny_v2_model_path, "--epochs", 0, "--checkpoint", start)
    saved = read_checkpoint(start)
    state = dict(saved.tensors, step=np.array([contract.MAX_STEP - 2], np.int32))
    near = tmp_path / "near.ckpt"
    write_checkpoint(near, state, saved.model_fingerprint)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "bottlenecks.npy", rng.random((4, 7), dtype=np.float32))
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2, 0]))
    common = ["--model", tiny_v2_model_path, "--restore", near, "--bottlenecks", tmp_path / "bottlenecks.npy",
              "--labels", tmp_path / "labels.npy", "--batch_size", 2]
    after = tmp_path / "after.ckpt"
    result = run_demo(cpp_demo, *common, "--epochs", 2, "--checkpoint", after, expect_ok=False)  # 4 steps: 2 left
    assert_one_error_line(result, f"the optimizer step counter is {contract.MAX_STEP - 2}; 4 more step(s) would pass")
    assert "epoch" not in result.stdout and not after.exists()
    run_demo(cpp_demo, *common, "--epochs", 1, "--checkpoint", after)  # exactly the 2 steps left
    assert int(read_checkpoint(after).tensors["step"][0]) == contract.MAX_STEP
