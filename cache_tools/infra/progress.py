"""Progress bars that read well on a terminal and in a log file.

On a terminal this is tqdm as usual. When stderr is not a terminal (a log file, ``nohup``,
a CI job), each refresh becomes one plain line, at most every :data:`LOG_INTERVAL_S` seconds,
instead of thousands of carriage-return frames. Notebooks keep tqdm's widget.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm as plain_tqdm
from tqdm.auto import tqdm as auto_tqdm
from tqdm.autonotebook import tqdm as notebook_or_plain_tqdm

LOG_INTERVAL_S = 30.0
"""Seconds between progress lines when stderr is not a terminal."""


class _Lines:
    """A text stream for tqdm that turns every carriage-return refresh into one line."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(plain_tqdm):
    """tqdm for a log file: a new postfix waits for the next timed refresh instead of forcing one."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)


def progress(iterable: Iterable[Any] | None = None, *, disable: bool = False, **kw: Any) -> plain_tqdm:
    """A tqdm bar over ``iterable`` (or a manual one), suited to where stderr goes."""
    if disable or notebook_or_plain_tqdm is not plain_tqdm or sys.stderr.isatty():
        return auto_tqdm(iterable, disable=disable, **kw)
    kw.setdefault("mininterval", LOG_INTERVAL_S)
    kw.setdefault("ncols", 100)
    return _LogBar(iterable, file=_Lines(sys.stderr), ascii=True, **kw)
