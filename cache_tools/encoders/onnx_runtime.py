"""ONNX Runtime for a frozen tower's fp32 forward on CPU, chosen per CPU by measurement.

A frozen tower is a fixed function, so it can run on any runtime that computes the same thing.
:func:`onnx_forward` exports a ``torch.nn.Module`` once to ONNX (TorchScript exporter, opset 17,
dynamic batch and sequence axes), keeps the file under :func:`onnx_dir` keyed by the weights and
the library versions, and returns a callable that runs it with ONNX Runtime's CPU provider on
``torch.get_num_threads()`` threads. Outputs equal torch's fp32 ones up to float rounding.

:func:`pick_runtime` times the candidates on one real batch (one warm-up call, then the best of
two) and keeps the fastest, once per process and key, so every encoder of a run uses the same
runtime. ``TFLOCAL_RUNTIME=torch`` or ``=onnx`` skips the measurement. Only fp32 CPU forwards go
through here, and int8 ones (:func:`quantized_int8`, ONNX Runtime only): bf16 and GPU forwards
stay in torch.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cache_tools.errors import UserError

RUNTIMES = ("torch", "onnx")
RUNTIME_ENV = "TFLOCAL_RUNTIME"
OPSET = 17
_CHOSEN: dict[str, str] = {}
"""key -> runtime picked in this process."""


def runtime_override() -> str | None:
    """``TFLOCAL_RUNTIME`` (torch | onnx | auto/unset -> None); UserError for anything else."""
    value = os.environ.get(RUNTIME_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in RUNTIMES:
        raise UserError(f"{RUNTIME_ENV}={value!r}: choose one of auto, {', '.join(RUNTIMES)}")
    return value


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_dir() -> Path:
    """Where exported towers are kept: ``$TFLOCAL_CACHE_DIR/onnx`` or
    ``$XDG_CACHE_HOME/tflocal/onnx`` (default ``~/.cache/tflocal/onnx``)."""
    root = os.environ.get("TFLOCAL_CACHE_DIR")
    if root:
        return Path(root) / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tflocal" / "onnx"


def weights_key(module: torch.nn.Module, name: str) -> str:
    """A file name for ``module``'s export: ``name`` + a hash of its parameters' shapes and a
    sample of their values, torch's and onnxruntime's versions."""
    import onnxruntime

    h = hashlib.sha256(f"{torch.__version__}|{onnxruntime.__version__}|{OPSET}".encode())
    for key, value in module.state_dict().items():
        flat = value.detach().float().flatten()
        h.update(f"{key}{tuple(value.shape)}".encode())
        h.update(flat[:: max(1, flat.numel() // 64)].numpy().tobytes())
    return f"{name}-{h.hexdigest()[:16]}.onnx"


def export(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """Export ``module`` (eval, fp32; its one output named ``out``, ``dynamic_axes`` naming the
    inputs' and ``out``'s variable axes) to ``path`` unless it is there; written to a temporary file
    and renamed, so a killed export leaves nothing half-written."""
    if path.exists():
        return path
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            example,
            str(tmp),
            input_names=input_names,
            output_names=["out"],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)
    return path


def quantized_int8(path: Path) -> Path:
    """``path``'s model with every MatMul by a weight in int8 (ONNX Runtime's dynamic
    quantization: weights int8 per output channel in 7 bits, activations uint8 per tensor,
    computed on each call), kept beside it as ``NAME-int8.onnx`` unless there; written to a
    temporary file and renamed. The 7 bits (``reduce_range``) keep the u8 x s8 products of CPUs
    without VNNI (AVX2 only) from saturating, so every x86 CPU computes the same numbers.
    MatMuls of two activations (attention's) stay fp32."""
    out = path.with_name(f"{path.stem}-int8.onnx")
    if out.exists():
        return out
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice on the root logger ("consider pre-processing")
    try:
        quantize_dynamic(
            str(path),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)
    os.replace(tmp, out)
    return out


_RUNNERS: dict[tuple[str, int], Any] = {}
"""(model file, threads) -> its runner, made once a process (ONNX Runtime's runners are safe to
share between threads)."""


def inference_runner(path: Path) -> Any:
    """An ONNX Runtime CPU InferenceSession on ``torch.get_num_threads()`` intra-op threads (one
    a process for each file and thread count)."""
    key = (str(path), torch.get_num_threads())
    if key not in _RUNNERS:
        _RUNNERS[key] = _new_runner(path)
    return _RUNNERS[key]


def _new_runner(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # idle threads block instead of spinning: the caching loop interleaves these forwards with
    # torch's (the other tower, or the runtime timing), which spinning threads would starve
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_forward(
    module: torch.nn.Module,
    name: str,
    example: tuple[torch.Tensor, ...],
    input_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    int8: bool = False,
) -> Callable[..., torch.Tensor]:
    """``module``'s forward on ONNX Runtime: a callable taking the same tensors as ``module``
    (positionally, CPU) and returning its single output as a float32 CPU tensor; with ``int8``
    its weight MatMuls run in int8 (:func:`quantized_int8`)."""
    path = export(module, example, onnx_dir() / weights_key(module, name), input_names, dynamic_axes)
    sess = inference_runner(quantized_int8(path) if int8 else path)

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        feed = {k: v.detach().cpu().contiguous().numpy() for k, v in zip(input_names, inputs)}
        return torch.from_numpy(sess.run(None, feed)[0])

    return run


def best_seconds(fn: Callable[[], Any], repeats: int = 2) -> float:
    """The fastest of ``repeats`` calls of ``fn`` after one warm-up call, in seconds."""
    fn()  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def pick_runtime(key: str, candidates: dict[str, Callable[[], Any]], what: str) -> str:
    """The fastest of ``candidates`` (runtime name -> a call on one real batch) on this CPU,
    measured once per process and ``key``; ``TFLOCAL_RUNTIME`` decides instead when set. Says the
    choice and the measured times once on stderr."""
    if key in _CHOSEN:
        return _CHOSEN[key]
    forced = runtime_override()
    if forced is not None:
        if forced not in candidates:
            raise UserError(
                f"{RUNTIME_ENV}={forced}: not available for the {what} "
                f"(available: {', '.join(candidates)}; onnx needs the packages onnx and onnxruntime)"
            )
        _CHOSEN[key] = forced
        return forced
    seconds = {name: best_seconds(fn) for name, fn in candidates.items()}
    choice = min(seconds, key=seconds.get)
    _CHOSEN[key] = choice
    if len(seconds) > 1:
        times = ", ".join(f"{n} {s * 1e3:.0f} ms" for n, s in seconds.items())
        print(f"   {what}: {choice} (one batch here: {times}; {RUNTIME_ENV} overrides)", file=sys.stderr)
    return choice


def runtime_choices() -> dict[str, str]:
    """The choices made so far in this process: key (tower:encoder:threads) -> runtime."""
    return dict(_CHOSEN)


def runtime_key(tower: str, name: str, threads: int) -> str:
    """The :func:`pick_runtime` key of ``tower`` (image | text) of encoder ``name`` at ``threads``."""
    return f"{tower}:{name}:{threads}"


def adopt_choices(choices: dict[str, str], threads: int) -> None:
    """Take another process's :func:`runtime_choices` as this one's at ``threads`` threads (a
    process that writes a second cache of the same run uses the runtimes of the first)."""
    for key, choice in choices.items():
        tower, _, rest = key.partition(":")  # runtime_key's format; names may hold ':'
        _CHOSEN.setdefault(runtime_key(tower, rest.rsplit(":", 1)[0], threads), choice)


def forget_choices() -> None:
    """Drop the per-process choices and runners (tests)."""
    _CHOSEN.clear()
    _RUNNERS.clear()
