"""fit's progress line: one bar per epoch, on stderr or to a callable of the app's."""

from __future__ import annotations

import sys
from typing import Callable

Progress = Callable[[str], None]


def progress_printer(progress: bool | Progress) -> Progress:
    """A callable is used as it is; True prints the bar in place on stderr; False prints nothing."""
    if callable(progress):
        return progress
    if progress:
        return lambda line: print("\r" + line, end="", file=sys.stderr, flush=True)
    return lambda line: None


def epoch_bar(epoch: int, epochs: int, loss: float, width: int = 20) -> str:
    filled = width * epoch // epochs
    end = "\n" if epoch == epochs else ""
    return f"epoch {epoch:>{len(str(epochs))}}/{epochs} [{'#' * filled}{'.' * (width - filled)}] loss {loss:.4f}{end}"
