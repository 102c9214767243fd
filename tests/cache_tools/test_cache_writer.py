"""Writer/reader round trip, bad input, resume after kill -9, shards as one cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from cache_tools.sources.records import ImageRecord, TextRecord
from cache_tools.store.reader import chunk_shuffle, open_cache
from cache_tools.store.schema import FORMAT_VERSION, CacheFormatError
from cache_tools.store.shards import merge_shards
from cache_tools.write.writer import shard_path, write_cache

sys.path.insert(0, str(Path(__file__).parents[1]))
from cache_records import assert_same_cache, make_records  # noqa: E402
from fakes import FakeEncoder  # noqa: E402


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
    # every stored array equals a direct call of the encoder on the same input
    px = torch.stack([enc.preprocess(Image.open(r.image)) for r in recs])
    direct = enc.encode_images(px)
    np.testing.assert_allclose(c.patches(np.arange(12)), direct.patches.numpy().astype(np.float16))
    np.testing.assert_allclose(c.image_global(np.arange(12)), direct.global_.numpy(), rtol=1e-6)
    texts = [t.text for r in recs for t in r.texts]
    assert list(c.strings) == texts
    d = enc.encode_texts(texts)
    for t in range(len(texts)):
        np.testing.assert_array_equal(c.tokens([t])[0], d.tokens[t].numpy().astype(np.float16))
        assert c.token_strings(t) == d.token_strings[t]
    np.testing.assert_allclose(c.text_global(np.arange(len(texts))), d.global_.numpy(), rtol=1e-6)
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
sys.path.insert(0, {tests!r})
from fakes import FakeEncoder
from cache_records import make_records
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
    script = RESUME_SCRIPT.format(tests=str(Path(__file__).parents[1]), root=str(tmp_path), out=str(out))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
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


def test_two_shards_open_as_one_cache(tmp_path):
    recs = make_records(tmp_path, 9)
    write_cache(recs, FakeEncoder(), tmp_path / "one.h5", batch_size=4, part_records=4, progress=False)
    out = tmp_path / "sharded" / "c.h5"
    out.parent.mkdir()
    for r in range(2):
        write_cache(recs, FakeEncoder(), out, batch_size=4, part_records=4, shard=(r, 2), progress=False)
    shards = [shard_path(out, r, 2) for r in range(2)]
    merge_shards(out, shards)
    assert out.stat().st_size < sum(s.stat().st_size for s in shards) / 2  # payload not copied
    with h5py.File(out, "r") as f:
        assert f["images/patches"].is_virtual and f["texts/tokens"].is_virtual
    a, b = open_cache(tmp_path / "one.h5"), open_cache(out)
    for name in ("image_ids", "strings", "offsets", "image_index", "positive_index", "op"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.patches(np.arange(9)), b.patches(np.arange(9)))
    np.testing.assert_array_equal(a.tokens(np.arange(a.n_texts))[-1], b.tokens(np.arange(b.n_texts))[-1])
    # the folder can be moved: shards are referenced by relative path
    moved = tmp_path / "moved"
    out.parent.rename(moved)
    np.testing.assert_array_equal(open_cache(moved / "c.h5").patches([8]), a.patches([8]))
    # a list of shard files opens as one cache too
    c = open_cache([moved / s.name for s in shards])
    np.testing.assert_array_equal(c.text_global(np.arange(c.n_texts)), a.text_global(np.arange(a.n_texts)))


def test_other_format_version_is_a_clear_error(tmp_path):
    write_cache(make_records(tmp_path, 2), FakeEncoder(), tmp_path / "c.h5", progress=False)
    with h5py.File(tmp_path / "c.h5", "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CacheFormatError, match="format_version"):
        open_cache(tmp_path / "c.h5")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("a", data=[1])
    with pytest.raises(CacheFormatError, match="not a tflocal cache"):
        open_cache(tmp_path / "x.h5")


def test_chunk_shuffle_is_a_blockwise_permutation():
    perm = chunk_shuffle(1000, block=50, seed=3, span=100)
    assert sorted(perm.tolist()) == list(range(1000))
    assert not np.array_equal(perm, np.arange(1000))
    np.testing.assert_array_equal(perm, chunk_shuffle(1000, block=50, seed=3, span=100))
    assert not np.array_equal(perm, chunk_shuffle(1000, block=50, seed=4, span=100))
    # a batch of `span` rows is made of whole blocks: 2 blocks of 50 rows each
    for i in range(0, 1000, 100):
        blocks = perm[i : i + 100] // 50
        assert len(set(blocks.tolist())) == 2 and np.all(np.bincount(blocks)[np.unique(blocks)] == 50)
    # uneven block / span sizes still give a permutation
    assert sorted(chunk_shuffle(997, block=27, seed=0, span=256).tolist()) == list(range(997))


def test_load_into_memory_gives_the_same_rows(tmp_path):
    write_cache(make_records(tmp_path, 5), FakeEncoder(), tmp_path / "c.h5", progress=False)
    c = open_cache(tmp_path / "c.h5")
    before = c.patches([4, 0]), c.tokens([3])[0]
    c.load_into_memory()
    assert c.in_memory
    np.testing.assert_array_equal(c.patches([4, 0]), before[0])
    np.testing.assert_array_equal(c.tokens([3])[0], before[1])
    assert json.loads(json.dumps(c.attrs["plan"]))["batch_size"] == 32
