"""The catalogue of bad inputs: what a user does wrong, the command, and what they get.

One table, two uses: ``tests/tflocal/app/test_bad_inputs.py`` runs every row (the real CLI, real files,
real processes where two writers are involved) and asserts its message; ``python tests/helpers/bad_inputs.py``
writes ``docs/bad_inputs.md`` from the same rows, and a test fails when that file is stale.

A row's ``make(ctx)`` builds the bad input under ``ctx.tmp`` and returns the CLI arguments;
``runner`` says how it runs: ``"cli"`` (in this process, ``tflocal.app.cli.main``), ``"fsize:N"`` (a
subprocess whose file-size limit is N bytes: a full disk as the writer sees it) or
``"locked:PATH"`` (while another process holds the output's lock: a second writer).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRAIN_SMALL = [
    "model.width=32",
    "model.depth=2",
    "model.heads=4",
    "data.num_workers=0",
    "progress=false",
    "device=cpu",
    "epochs=1",
    "data.batch_size=8",
]


@dataclass
class Ctx:
    """What a row may use: a temp folder, a tiny encoder's name, a good manifest, a good training cache."""

    tmp: Path
    encoder: str
    manifest: Path
    bind: Path
    extra: dict[str, Any] = field(default_factory=dict)


def cache_argv(ctx: Ctx, manifest: Path | str, out: Path | str, *more: str) -> list[str]:
    return ["cache", "--encoder", ctx.encoder, "--data", f"jsonl:{manifest}", "--out", str(out), "--quiet",
            "--batch-size", "4", "--num-workers", "0", "--device", "cpu", *more]  # fmt: skip


def train_argv(cache: Path | str, out: Path | str, *sets: str) -> list[str]:
    argv = ["train", "--cache", str(cache), "--out", str(out)]
    for s in [*TRAIN_SMALL, *sets]:
        argv += ["--set", s]
    return argv


def write_manifest(path: Path, lines: list[Any], images: Path) -> Path:
    """A JSONL manifest: dict lines as JSON, str lines as written (bytes as bytes)."""
    out = b""
    for x in lines:
        out += x if isinstance(x, bytes) else (x if isinstance(x, str) else json.dumps(x)).encode() + b"\n"
    path.write_bytes(out)
    return path


def good_lines(ctx: Ctx, n: int = 3) -> list[dict]:
    imgs = sorted((ctx.manifest.parent / "img").glob("*.png"))
    return [{"image": str(imgs[i % len(imgs)]), "id": f"g{i}", "captions": [f"a red cube number {i}"]}
            for i in range(n)]  # fmt: skip


def not_hdf5(ctx: Ctx, name: str = "junk.h5") -> Path:
    p = ctx.tmp / name
    p.write_text("this is not an HDF5 file\n")
    return p


def truncated(ctx: Ctx, name: str = "cut.h5") -> Path:
    data = ctx.bind.read_bytes()
    p = ctx.tmp / name
    p.write_bytes(data[: len(data) // 2])
    return p


def earlier_run(ctx: Ctx) -> Path:
    """A finished good training run in ctx.tmp/run (made once per pytest run)."""
    out = ctx.tmp / "run"
    from tflocal.app.cli import main

    assert main(train_argv(ctx.bind, out)) == 0
    ctx.extra["log_before"] = (out / "log.jsonl").read_text()
    return out


@dataclass
class Case:
    id: str
    command: str
    bad_input: str
    gets: str
    """The message fragment (or the skipped reason) the user gets; asserted by the test."""
    make: Callable[[Ctx], list[str]]
    runner: str = "cli"
    exit_code: int = 2
    where: str = "stderr"
    """Where ``gets`` shows: the one-line error (``stderr``) or the cache's ``skipped`` reasons."""
    check: Callable[[Ctx], None] | None = None
    """More to assert afterwards (nothing left behind, data preserved)."""
    note: str = ""


def _no_leftovers(ctx: Ctx) -> None:
    assert not (ctx.tmp / "c.h5").exists() and not (ctx.tmp / "c.h5.parts").exists()


def _no_out_dir(ctx: Ctx) -> None:
    assert not (ctx.tmp / "out").exists(), "a failed run left its output folder"


def _no_eval_out(ctx: Ctx) -> None:
    assert not (ctx.tmp / "ev").exists(), "a failed eval left its output folder"


def _log_kept(ctx: Ctx) -> None:
    assert (ctx.tmp / "run" / "log.jsonl").read_text() == ctx.extra["log_before"]
    assert (ctx.tmp / "run" / "last.pt").is_file()


def _lines(ctx: Ctx, *bad: Any) -> Path:
    return write_manifest(ctx.tmp / "m.jsonl", [*good_lines(ctx), *bad], ctx.manifest.parent)


CASES: list[Case] = [
    Case("cache-out-not-hdf5", "cache", "`--out` is an existing file that is not a cache (a text file)",
         "exists and is not a readable tflocal cache", lambda c: cache_argv(c, c.manifest, not_hdf5(c))),
    Case("cache-out-truncated", "cache", "`--out` is a truncated `.h5` file",
         "exists and is not a readable tflocal cache", lambda c: cache_argv(c, c.manifest, truncated(c))),
    Case("cache-manifest-not-utf8", "cache", "a manifest line holds bytes that are not UTF-8",
         "m.jsonl:4 is not UTF-8 text (byte 0xe9 at column 37)",
         lambda c: cache_argv(c, _lines(c, b'{"image": "x.png", "captions": ["caf\xe9"]}\n'), c.tmp / "c.h5"),
         check=_no_leftovers),
    Case("cache-manifest-empty", "cache", "a manifest with no usable record (here: two malformed lines)",
         "gave no records to cache",
         lambda c: cache_argv(c, write_manifest(c.tmp / "m.jsonl", ["{oops", "[1, 2]"], c.tmp), c.tmp / "c.h5"),
         check=_no_leftovers, note="nothing is written: no `.parts/` folder is left behind"),
    Case("cache-disk-full", "cache", "the disk fills up while caching (here: a 64 KiB file-size limit)",
         "no space left for the cache part", lambda c: cache_argv(c, c.manifest, c.tmp / "c.h5"),
         runner="fsize:65536", note="finished parts are kept: free space and run the same command again"),
    Case("cache-second-writer", "cache", "a second `tflocal cache` with the same `--out` while the first runs",
         "is in use: another `tflocal cache` run is writing it",
         lambda c: cache_argv(c, c.manifest, c.tmp / "c.h5"), runner="locked:c.h5",
         note="it stops before touching anything; the first run goes on"),
    Case("cache-bad-json-line", "cache", "a malformed JSON line after the last good record",
         "malformed JSON (Expecting ',' delimiter at column",
         lambda c: cache_argv(c, _lines(c, '{"image": "a.png" "captions": []}'), c.tmp / "c.h5"),
         exit_code=0, where="skipped", note="recorded in the cache's `skipped` with its position"),
    Case("cache-empty-caption", "cache", "an empty caption after the last good record",
         "empty or non-string caption",
         lambda c: cache_argv(c, _lines(c, {**good_lines(c)[0], "id": "e", "captions": ["  ", "ok"]}), c.tmp / "c.h5"),
         exit_code=0, where="skipped"),
    Case("cache-duplicate-id", "cache", "a record id used twice (the later one after the last good record)",
         "duplicate record id", lambda c: cache_argv(c, _lines(c, good_lines(c)[0]), c.tmp / "c.h5"),
         exit_code=0, where="skipped"),
    Case("cache-missing-image", "cache", "an image file that does not exist",
         "FileNotFoundError",
         lambda c: cache_argv(c, _lines(c, {"image": "nope.png", "captions": ["a cat"]}), c.tmp / "c.h5"),
         exit_code=0, where="skipped"),
    Case("cache-caption-no-words", "cache", "a caption of only emoji or punctuation",
         "has no letters or digits",
         lambda c: cache_argv(c, _lines(c, {**good_lines(c)[0], "id": "u", "captions": ["\U0001f600\U0001f600 !!"]}),
                              c.tmp / "c.h5"),
         exit_code=0, note="a warning; the caption is still cached"),
    Case("train-cache-not-hdf5", "train", "`cache` is not an HDF5 file",
         "is not a readable tflocal cache", lambda c: train_argv(not_hdf5(c), c.tmp / "out"), check=_no_out_dir,
         note="no empty output folder is left"),
    Case("train-cache-truncated", "train", "`cache` is a truncated `.h5` file",
         "is not a readable tflocal cache", lambda c: train_argv(truncated(c), c.tmp / "out"), check=_no_out_dir),
    Case("train-lr-nan", "train", "`--set optim.lr=nan`", "'optim.lr': 'nan' is not a finite number",
         lambda c: train_argv(c.bind, c.tmp / "out", "optim.lr=nan"), check=_no_out_dir),
    Case("train-bad-yaml", "train", "a malformed YAML value: `--set \"model.width=[\"`", "the value is not valid YAML",
         lambda c: train_argv(c.bind, c.tmp / "out", "model.width=["), check=_no_out_dir),
    Case("train-restart-over-run", "train", "`--set resume=false` into the folder of an earlier good run",
         "holds an earlier run (last.pt, best.pt) and resume=False: nothing was changed",
         lambda c: train_argv(c.bind, earlier_run(c), "resume=false", "optim.lr=1e6"), check=_log_kept,
         note="`overwrite=true` replaces it"),
    Case("train-second-writer", "train", "a second `tflocal train` into the same --out folder while the first runs",
         "is in use: another `tflocal train` run is writing it",
         lambda c: train_argv(c.bind, c.tmp / "out"), runner="locked:out/"),
    Case("train-disk-full", "train", "the disk fills up when a checkpoint is saved (here: a 16 KiB file-size limit)",
         "no space left for the checkpoint", lambda c: train_argv(c.bind, c.tmp / "out"), runner="fsize:16384"),
    Case("eval-cache-not-hdf5", "eval", "`--cache` is not an HDF5 file", "is not a readable tflocal cache",
         lambda c: ["eval", "--bench", "sugarcrepe", "--cache", str(not_hdf5(c)), "--scorer", "cosine",
                    "--out", str(c.tmp / "ev")], check=_no_eval_out),  # fmt: skip
    Case("search-cache-truncated", "search", "`--cache` is a truncated `.h5` file", "is not a readable tflocal cache",
         lambda c: ["search", "--cache", str(truncated(c)), "--query", "a red cube"]),
]  # fmt: skip


def render() -> str:
    """docs/bad_inputs.md from CASES."""
    lines = [
        "# Bad inputs and what they get",
        "",
        "Generated from `tests/helpers/bad_inputs.py` by `python tests/helpers/bad_inputs.py`; every row is",
        "run by `tests/tflocal/app/test_bad_inputs.py`, which asserts the message shown here (and fails when",
        "this file is stale). Errors are one line on stderr, `tflocal COMMAND: error: ...`, with exit status 2;",
        "entries a source cannot use are recorded in the cache's `skipped/{item,reason}` and the run goes on.",
        "",
        "| command | bad input | exit | what you get (asserted fragment) | notes |",
        "|---|---|---:|---|---|",
    ]
    for c in CASES:
        where = "in `skipped`: " if c.where == "skipped" else ("warning: " if c.exit_code == 0 else "")
        gets = c.gets.replace("|", "\\|")
        lines.append(
            f"| `tflocal {c.command}` | {c.bad_input} | {c.exit_code} | {where}“{gets}” | {c.note} |"
        )
    return "\n".join(lines) + "\n"


DOC = Path(__file__).resolve().parents[2] / "docs" / "bad_inputs.md"

if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC} ({len(CASES)} rows)", file=sys.stderr)
