"""Exclusive locks on an output (a cache file, a training folder), held for a whole run.

Two writers with the same output would overwrite each other's temporary files, so every writer
takes :func:`exclusive` on its output *before touching anything*; the second one stops at once
with a message naming the output and the other process. The lock is an OS file lock
(``flock``, through ``filelock``) on a small side file: it is released when the process exits in
any way (``kill -9`` included), so a stale lock never blocks a rerun. The side file itself stays
(removing it while another process may be opening it would break the lock).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from cache_tools.errors import UserError


def lock_path(target: str | Path, folder: bool = False) -> Path:
    """The lock file of ``target``: ``.NAME.lock`` beside a file, ``.lock`` inside a folder."""
    target = Path(target)
    return target / ".lock" if folder else target.with_name(f".{target.name}.lock")


class OutputLock:
    """An exclusive, non-blocking lock on ``target`` (acquire with :meth:`acquire`).

    Re-entrant within one process and thread (``cache build`` takes it before loading the model,
    ``write_cache`` again around the writing); another process, or the same path locked while
    held by another thread, gets the UserError."""

    def __init__(self, target: str | Path, what: str, advice: str, folder: bool = False):
        self.target, self.what, self.advice = Path(target), what, advice
        self.path = lock_path(self.target, folder).absolute()
        self._lock = FileLock(str(self.path), timeout=0, preserve_lock_file=True, is_singleton=True)
        self._mine = 0

    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise UserError(
                f"{self.target} is in use: another {self.what} is writing it right now "
                f"(lock {self.path} is held). {self.advice}"
            ) from None
        self._mine += 1
        return self

    def release(self) -> None:
        while self._mine:
            self._mine -= 1
            self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def exclusive(target: str | Path, what: str, advice: str, folder: bool = False) -> Iterator[OutputLock]:
    """Hold an exclusive lock on ``target`` for the block; UserError at once if another holds it."""
    lock = OutputLock(target, what, advice, folder).acquire()
    try:
        yield lock
    finally:
        lock.release()
