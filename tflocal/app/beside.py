"""Caches that training does not read, built in a second process while the heads train.

A small head trained on a CPU keeps about one and a half of two cores busy (one process stepping,
one loader worker), and the evaluation cache is not read until training ends. So the pipeline
builds what the heads need first, then starts the rest here, in a spawned process on half the
threads (one of two), and trains meanwhile. Measured on a 2-core AMD EPYC with torch limited to
AVX2: both quickstart heads beside the test cache took 188 s against 234 s one after the other,
and the cache's every array was bitwise the same as one built alone on two threads
(docs/experiments.md).

The child is told the tower runtimes the parent picked (:mod:`cache_tools.encoders.onnx_runtime`),
so both caches come from the same runtime, and prints nothing while it runs: what it would have
printed is printed by :meth:`Beside.result`. A failure there is raised by ``result`` as it was
raised in the child; stopping the parent stops the child, and a child whose parent was killed
ends itself within a second (a cache build resumes where it stopped).
``TFLOCAL_BESIDE=0`` builds everything in order instead.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ENV = "TFLOCAL_BESIDE"


_IN_CHILD = False


def in_child() -> bool:
    """Whether this process builds caches beside a training (nothing it shows is seen live)."""
    return _IN_CHILD


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def beside_enabled(cpu_training: bool) -> bool:
    """Whether to build beside training: CPU training, two cores or more, not switched off."""
    return cpu_training and usable_cores() >= 2 and os.environ.get(ENV, "1") != "0"


def child_threads() -> int:
    import torch

    return max(1, torch.get_num_threads() // 2)


def _work(
    caches: Sequence[Any],
    evaluation: Any,
    prepare: Callable[[], None] | None,
    threads: int,
    runtimes: dict[str, str],
) -> tuple[str, float]:
    """In the child: ``prepare()``, each cache of ``caches``, then the benchmark's cache ->
    (its path, seconds)."""
    import torch

    from cache_tools.encoders.onnx_runtime import adopt_choices
    from tflocal.app.pipeline import build_untrained_caches

    global _IN_CHILD
    _IN_CHILD = True
    torch.set_num_threads(threads)
    adopt_choices(runtimes, threads)
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars: nobody sees them live
    t0 = time.perf_counter()
    path = build_untrained_caches(caches, evaluation, prepare, progress=False)
    return str(path), time.perf_counter() - t0


def _end_with_parent(parent: int) -> None:
    """End this process soon after ``parent`` dies (killed, say): nothing would read its result,
    and it would hold the cache's lock meanwhile. A cache killed mid-write resumes on the next run."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="tflocal-beside-watch", daemon=True).start()


def _child(conn: Any, args: tuple, parent: int) -> None:
    _end_with_parent(parent)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            value = _work(*args)
        conn.send(("ok", value, out.getvalue()))
    except BaseException as err:  # sent to the parent, raised there
        import traceback

        from tflocal.errors import UserError

        text = out.getvalue() + ("" if isinstance(err, UserError) else traceback.format_exc())
        try:
            conn.send(("error", err, text))
        except Exception:  # an exception that does not pickle: its text
            conn.send(("error", RuntimeError(f"{type(err).__name__}: {err}"), text))
    finally:
        conn.close()


class Beside:
    """One spawned process building ``caches`` then ``evaluation``'s cache (``prepare`` first:
    e.g. rendering the images they read); :meth:`result` waits for it."""

    def __init__(self, caches: Sequence[Any], evaluation: Any, prepare: Callable[[], None] | None = None):
        from cache_tools.encoders.onnx_runtime import runtime_choices

        ctx = multiprocessing.get_context("spawn")
        self.threads = child_threads()
        self._conn, child_conn = ctx.Pipe(duplex=False)
        args = (list(caches), evaluation, prepare, self.threads, runtime_choices())
        # not a daemon: a daemon may not start processes, and the render may (its pool)
        self._proc = ctx.Process(target=_child, args=(child_conn, args, os.getpid()), name="tflocal-beside")
        self._proc.start()
        child_conn.close()
        self.seconds: float | None = None

    def result(self) -> Path:
        """Wait for the child -> the benchmark cache's path; print what the child printed; raise
        what it raised."""
        try:
            status, value, text = self._conn.recv()
        except EOFError:
            from tflocal.errors import UserError

            self._proc.join()
            raise UserError(
                f"the process building the caches beside the training died (exit code {self._proc.exitcode}"
                f"{', killed: out of memory?' if self._proc.exitcode == -9 else ''}); run the same command "
                f"again (finished work is kept), or set {ENV}=0 to build them after the training"
            ) from None
        finally:
            self._conn.close()
        self._proc.join()
        if text.strip():
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        if status == "error":
            raise value
        path, self.seconds = value
        return Path(path)

    def stop(self) -> None:
        """End the child now (the parent failed or was interrupted)."""
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()
        self._conn.close()
