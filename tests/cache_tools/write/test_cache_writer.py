"""Writer/reader round trip, bad input recorded, text-only records, resume after kill -9, and the
same command run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.sources.records import ImageRecord, TextRecord
from cache_tools.store.reader import open_cache
from cache_tools.store.schema import FORMAT_VERSION
from cache_tools.write.writer import write_cache
from helpers import subprocess_pythonpath
from helpers.cache_records import assert_same_cache, make_records
from helpers.fakes import FakeEncoder


def test_round_trip_matches_direct_encoding(tmp_path):
    recs = make_records(tmp_path)
    enc = FakeEncoder()
    summary = write_cache(recs, enc, tmp_path / "c.h5", batch_size=5, progress=False)
    assert summary.n_images == 12 and summary.n_texts == 28 and summary.n_skipped == 0
    c = open_cache(tmp_path / "c.h5")
    assert c.attrs["format_version"] == FORMAT_VERSION and c.attrs["encoder"] == "fake:test"
    assert c.attrs["space"] == "joint" and c.attrs["grid"] == [4, 4] and c.attrs["dtype"] == "float16"
    assert c.attrs["n_tokens"] == int(c.offsets[-1])
    f = c.file
    assert f["images/patches"].dtype == np.float16 and f["images/patches"].shape == (12, 16, 16)
    assert f["texts/tokens"].dtype == np.float16 and f["texts/offsets"].dtype == np.int64
    assert c.offsets.shape == (29,) and c.offsets[0] == 0 and np.all(np.diff(c.offsets) > 0)
    _assert_rows_match_direct_encoding(c, recs, enc)
    # structure: image of each text, positive of each negative, operators, meta
    t = 0
    for i, r in enumerate(recs):
        for j, tr in enumerate(r.texts):
            assert c.image_index[t] == i
            assert c.positive_index[t] == (-1 if tr.positive < 0 else t - j + tr.positive)
            assert c.op[t] == tr.op and c.kind[t] == tr.kind and c.text_meta(t) == tr.meta
            t += 1
    assert c.image_meta(3) == {"split": "train"} and c.image_group[3] == "g1"
    # random access in any order, repeats allowed, equals numpy fancy indexing
    idx = np.array([7, 2, 7, 11, 0])
    np.testing.assert_array_equal(c.patches(idx), f["images/patches"][()][idx])
    tok, mask = c.padded_tokens([0, 1, 2])
    assert tok.shape[0] == 3 and mask.sum() == sum(len(x) for x in c.tokens([0, 1, 2]))


def _assert_rows_match_direct_encoding(c, recs, enc) -> None:
    """Every stored array of cache ``c`` equals a direct call of the encoder on the same input."""
    n = len(recs)
    px = torch.stack([enc.preprocess(Image.open(r.image)) for r in recs])
    direct = enc.encode_images(px)
    np.testing.assert_allclose(c.patches(np.arange(n)), direct.patches.numpy().astype(np.float16))
    np.testing.assert_allclose(c.image_global(np.arange(n)), direct.global_.numpy(), rtol=1e-6)
    texts = [t.text for r in recs for t in r.texts]
    assert list(c.strings) == texts
    d = enc.encode_texts(texts)
    for t in range(len(texts)):
        np.testing.assert_array_equal(c.tokens([t])[0], d.tokens[t].numpy().astype(np.float16))
        assert c.token_strings(t) == d.token_strings[t]
    np.testing.assert_allclose(c.text_global(np.arange(len(texts))), d.global_.numpy(), rtol=1e-6)


def test_parts_encoded_into_reused_memory_match_direct_encoding(tmp_path, monkeypatch):
    """Six parts of two records, each encoded into one of two arenas that alternate while the
    part before it is written (the writes slowed here, so encoding runs as far ahead of them as
    it may): every row still equals a direct call of the encoder."""
    import cache_tools.write.writer as writer

    real = writer.append_arrays

    def slow(*args, **kwargs):
        time.sleep(0.2)
        real(*args, **kwargs)

    monkeypatch.setattr(writer, "append_arrays", slow)
    recs, enc = make_records(tmp_path), FakeEncoder()
    summary = write_cache(recs, enc, tmp_path / "c.h5", batch_size=2, part_records=2, progress=False)
    assert summary.n_images == 12
    _assert_rows_match_direct_encoding(open_cache(tmp_path / "c.h5"), recs, enc)


def test_bad_input_is_recorded_and_the_run_goes_on(tmp_path, capsys):
    recs = make_records(tmp_path, 4)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    recs.insert(1, ImageRecord(id="missing", image=str(tmp_path / "nope.jpg"), texts=[TextRecord("a cat")]))
    recs.insert(2, ImageRecord(id="broken", image=str(tmp_path / "broken.png"), texts=[TextRecord("a dog")]))
    recs[0].texts.append(TextRecord("   "))
    recs[0].texts.append(TextRecord("negative of the empty one", positive=3, op="swap"))
    recs[3].texts.append(TextRecord("a very long caption that goes on and on past the context"))
    enc = FakeEncoder(context_length=8)
    s = write_cache(recs, enc, tmp_path / "c.h5", batch_size=2, progress=False)
    c = open_cache(tmp_path / "c.h5")
    assert c.n_images == 4 and s.n_skipped == 4
    items = dict(c.skipped)
    reasons = " | ".join(f"{k}: {v}" for k, v in c.skipped)
    assert any("missing" in k for k in items) and any("broken" in k for k in items)
    assert "empty caption" in reasons and "was skipped" in reasons
    assert c.attrs["n_truncated"] == int(c.truncated.sum()) >= 1
    assert "skipped image missing" in capsys.readouterr().err


def test_text_only_records_have_no_image(tmp_path):
    recs = make_records(tmp_path, 2) + [ImageRecord(id="t", image=None, texts=[TextRecord("just text")])]
    write_cache(recs, FakeEncoder(), tmp_path / "c.h5", progress=False)
    c = open_cache(tmp_path / "c.h5")
    assert c.n_images == 2 and c.strings[-1] == "just text" and c.image_index[-1] == -1


RESUME_SCRIPT = r"""
import sys, time, pickle
from helpers.fakes import FakeEncoder
from helpers.cache_records import make_records
from cache_tools.write.writer import write_cache
from pathlib import Path
class Slow(FakeEncoder):
    def encode_images(self, px):
        time.sleep(0.05)
        return super().encode_images(px)
recs = make_records(Path({root!r}), 30)
write_cache(recs, Slow(), {out!r}, batch_size=3, part_records=6, progress=False)
print("DONE")
"""


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    write_cache(
        make_records(tmp_path, 30),
        FakeEncoder(),
        ref_dir / "ref.h5",
        batch_size=3,
        part_records=6,
        progress=False,
    )
    out = tmp_path / "run" / "c.h5"
    out.parent.mkdir()
    script = RESUME_SCRIPT.format(root=str(tmp_path), out=str(out))
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath()}
    kills = 0
    # kill -9 at growing delays: mid-part, between parts, during assembly; then let it finish
    for delay in (0.6, 0.9, 1.2, 1.5, 1.8):
        proc = subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if out.exists():
            break
    parts = out.with_name(out.name + ".parts")
    assert kills >= 1
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert "DONE" in done.stdout, done.stderr
    assert not parts.exists()
    assert_same_cache(ref_dir / "ref.h5", out)


def test_same_command_twice_is_a_no_op_and_settings_change_is_refused(tmp_path):
    recs = make_records(tmp_path, 4)
    write_cache(recs, FakeEncoder(), tmp_path / "c.h5", batch_size=2, progress=False)
    again = write_cache(recs, FakeEncoder(), tmp_path / "c.h5", batch_size=2, progress=False)
    assert again.resumed_parts == -1
    from tflocal.errors import UserError

    with pytest.raises(UserError, match="exists"):
        write_cache(recs, FakeEncoder(), tmp_path / "c.h5", batch_size=3, progress=False)


def _part(seed: int, n_img: int, crops: bool) -> tuple[tuple, dict]:
    """The columns (args, kwargs of ``write_arrays``) of a part cache of ``n_img`` images, 3
    captions each (the last a negative of the first), with rows wide enough that a part holds
    several HDF5 chunks of every payload dataset."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(12, 20, 3 * n_img)
    return _columns(
        {"encoder": "wide:test", "space": "joint", "global_space": "joint", "grid": [4, 4]},
        [f"s{seed}i{i}" for i in range(n_img)],
        rng.standard_normal((n_img, 16, 1024)).astype(np.float16),
        rng.standard_normal((n_img, 8192)).astype(np.float32),
        [f"caption {seed} {t}" for t in range(3 * n_img)],
        [rng.standard_normal((int(n), 1024)).astype(np.float16) for n in lengths],
        rng.standard_normal((3 * n_img, 8192)).astype(np.float32),
        np.repeat(np.arange(n_img), 3),
        [-1 if t % 3 < 2 else t - 2 for t in range(3 * n_img)],
        op=["" if t % 3 < 2 else "swap" for t in range(3 * n_img)],
        text_meta=[{"t": t} for t in range(3 * n_img)],
        truncated=[t % 5 == 0 for t in range(3 * n_img)],
        crops_global=rng.standard_normal((n_img, 5, 8192)).astype(np.float32) if crops else None,
        skipped=[(f"s{seed}/bad", "unreadable")],
    )


def _columns(*args, **kwargs) -> tuple[tuple, dict]:
    return args, kwargs


@pytest.mark.parametrize("n_img, crops", [(12, False), (12, True), (3, False)])
def test_assembly_equals_concatenation(tmp_path, n_img, crops):
    """The writer's assembly (the first part written as a file, the others' arrays appended to
    it, then completed; or a copy when parts are smaller than a chunk) gives the datasets, chunk
    shapes and attributes of :func:`concat_caches` over the same parts written as files."""
    import shutil

    import h5py

    from cache_tools.store.shards import PAYLOAD, concat_caches
    from cache_tools.write.arrays import append_arrays, write_arrays
    from cache_tools.write.writer import _complete, _payload_chunks_match
    from helpers.cache_records import arrays

    parts = [tmp_path / f"part-{k}.h5" for k in range(3)]
    cols = [_part(k, n_img - k, crops) for k in range(3)]
    for p, (args, kwargs) in zip(parts, cols):
        write_arrays(p, *args, **kwargs)
    attrs = {"source": "src", "plan": {"batch_size": 4}, "shard": [0, 1]}
    extra = [("src/x", "bad"), ("src/y", "worse")]
    concat_caches(parts, tmp_path / "ref.h5", attrs, extra_skipped=extra)
    # the writer's two ways: append to the first part's file, or copy when its chunks differ
    if _payload_chunks_match(parts):
        shutil.copy(parts[0], tmp_path / "out.h5")
        with h5py.File(tmp_path / "out.h5", "r+") as f:
            for args, kwargs in cols[1:]:
                append_arrays(f, *args, **kwargs)
            _complete(f, attrs, extra)
    else:
        concat_caches(parts, tmp_path / "out.h5", attrs, extra_skipped=extra, virtual=False)
    assert _payload_chunks_match(parts) == (n_img >= 8)
    ref, out = arrays(tmp_path / "ref.h5"), arrays(tmp_path / "out.h5")
    assert sorted(ref) == sorted(out) and ("images/crops/global" in out) == crops
    for name in ref:
        assert ref[name].dtype == out[name].dtype, name
        np.testing.assert_array_equal(ref[name], out[name], err_msg=name)
    with h5py.File(tmp_path / "ref.h5", "r") as a, h5py.File(tmp_path / "out.h5", "r") as b:
        for name in PAYLOAD:
            if name in a:
                assert a[name].chunks == b[name].chunks, name
        ka, kb = dict(a.attrs), dict(b.attrs)
        assert sorted(ka) == sorted(kb) and int(kb["n_skipped"]) == 3 + len(extra)
        for k in ka:
            if k != "created":
                assert np.array_equal(np.asarray(ka[k]), np.asarray(kb[k])), k


def test_a_failed_append_in_the_writer_thread_surfaces_and_the_rerun_resumes(tmp_path, monkeypatch):
    """Parts are added in a writer thread while the next is encoded: an error there (here a
    full disk on the third part) reaches the caller as the writer's clear message, the parts
    added before it stay, and the same command again adds the rest and equals an uninterrupted
    run."""
    import cache_tools.write.writer as writer
    from tflocal.errors import UserError

    records = make_records(tmp_path, 30)
    write_cache(records, FakeEncoder(), tmp_path / "ref.h5", batch_size=3, part_records=6, progress=False)
    real, calls = writer.append_arrays, []

    def failing(f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(f, *args, **kwargs)

    monkeypatch.setattr(writer, "append_arrays", failing)
    out = tmp_path / "c.h5"
    with pytest.raises(UserError, match="no space left .* run the same command again"):
        write_cache(records, FakeEncoder(), out, batch_size=3, part_records=6, progress=False)
    assert not out.exists()
    monkeypatch.setattr(writer, "append_arrays", real)
    summary = write_cache(records, FakeEncoder(), out, batch_size=3, part_records=6, progress=False)
    assert summary.resumed_parts == 2  # part 0 (written) and part 1 (the first append)
    assert_same_cache(tmp_path / "ref.h5", out)
