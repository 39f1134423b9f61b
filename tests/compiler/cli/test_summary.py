"""compiler/cli/summary.py: the summary names the labels and every choice the loss and the
optimizer records read, with the values the model was compiled with."""

from __future__ import annotations

import dataclasses

from tflite_transfer.compiler.cli import summary
from tflite_transfer.compiler.head import losses, optimizers


def with_choices(result, optimizer=None, loss=None, labels=None):
    head = dataclasses.replace(result.head, optimizer=optimizer or result.head.optimizer,
                               loss=loss or result.head.loss)
    metadata = result.metadata if labels is None else dataclasses.replace(result.metadata, labels=labels)
    return dataclasses.replace(result, head=head, metadata=metadata)


def line_of(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_no_labels_and_plain_sgd(tiny_fused):
    text = summary.format_summary(tiny_fused, "model.tflite")
    assert line_of(text, "labels:") == "labels: no labels (class ids 0..2; --labels names the classes)"
    assert line_of(text, "head:").endswith(f"optimizer sgd (learning rate {tiny_fused.head.optimizer.learning_rate:g})")


def test_labels_are_listed(tiny_fused):
    text = summary.format_summary(with_choices(tiny_fused, labels=("cat", "dog", "fox")), "model.tflite")
    assert line_of(text, "labels:") == "labels: 3: cat, dog, fox"


def test_every_hyper_parameter_the_records_read_is_shown(tiny_fused):
    for name, record in optimizers.OPTIMIZERS.items():
        given = {p.name: (not p.default) if isinstance(p.default, bool) else p.default / 2
                 for p in record.hyper_parameters}
        optimizer = optimizers.build_optimizer(name, 0.02, **given)
        head_line = line_of(summary.format_summary(with_choices(tiny_fused, optimizer=optimizer), "m"), "head:")
        assert f"optimizer {name} (learning rate 0.02" in head_line
        for parameter in record.hyper_parameters:
            value = optimizer[parameter.name]
            shown = (parameter.name if value else f"no {parameter.name}") if isinstance(value, bool) \
                else f"{parameter.name} {value:g}"
            assert shown in head_line, (name, shown, head_line)
    loss = losses.build_loss("softmax_cross_entropy", label_smoothing=0.15)
    head_line = line_of(summary.format_summary(with_choices(tiny_fused, loss=loss), "m"), "head:")
    assert "loss softmax_cross_entropy (label_smoothing 0.15)" in head_line
