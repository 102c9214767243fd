"""``wds:`` shards (img2dataset layout) as a data source, and their shard-wise cache build."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from cache_tools.errors import UserError
from cache_tools.sources import open_source

pytest.importorskip("webdataset")
from helpers import TESTS, subprocess_pythonpath
from helpers.fakes import FakeEncoder

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def image_bytes(color, fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buf, format=fmt)
    return buf.getvalue()


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """A tar with members KEY.EXT in sample order, as img2dataset writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def sample(key: str, k: int, caption: str | None = None, image: bytes | None = None, ext="jpg") -> tuple:
    members = {
        ext: image if image is not None else image_bytes(COLORS[k % 5], "PNG" if ext == "png" else "JPEG")
    }
    members["txt"] = (caption if caption is not None else f"a photo number {k}").encode()
    members["json"] = json.dumps(
        {"key": key, "url": f"http://x/{k}.jpg", "width": 24, "status": "success"}
    ).encode()
    return key, members


@pytest.fixture
def shards(tmp_path) -> Path:
    """Two shards: 00000 = 3 good samples (one png) + 1 corrupt jpg; 00001 = 2 good + 1 empty caption."""
    d = tmp_path / "cc"
    write_shard(
        d / "00000.tar",
        [
            sample("000000000", 0),
            sample("000000001", 1, image=b"not a jpeg at all"),
            sample("000000002", 2, ext="png"),
            sample("000000003", 3),
        ],
    )
    write_shard(
        d / "00001.tar",
        [sample("000010000", 4), sample("000010001", 5, caption="  "), sample("000010002", 6)],
    )
    return d


def test_wds_streams_samples_and_records_unreadable_ones(shards):
    src = open_source(f"wds:{shards}/{{00000..00001}}.tar")
    assert src.shards == [f"{shards}/00000.tar", f"{shards}/00001.tar"]
    recs = list(src)
    assert [r.id for r in recs] == [
        "00000/000000000",
        "00000/000000002",
        "00000/000000003",
        "00001/000010000",
        "00001/000010002",
    ]
    assert [r.texts[0].text for r in recs] == [f"a photo number {k}" for k in (0, 2, 3, 4, 6)]
    assert recs[1].image.convert("RGB").getpixel((5, 5)) == COLORS[2]  # the png, lossless
    assert recs[0].meta == {
        "shard": "00000",
        "key": "000000000",
        "url": "http://x/0.jpg",
        "width": 24,
        "status": "success",
    }
    assert [s[0] for s in src.skipped] == ["00000/000000001", "00001/000010001"]
    assert "undecodable .jpg" in src.skipped[0][1] and "empty caption" in src.skipped[1][1]


def test_wds_keys_pipe_and_broken_shards(shards, tmp_path):
    # configurable extensions: captions in .caption, images in .webp
    write_shard(
        tmp_path / "w" / "a.tar", [("k0", {"webp": image_bytes((1, 2, 3), "WEBP"), "caption": b"hello"})]
    )
    src = open_source(f"wds:{tmp_path / 'w' / 'a.tar'}", wds_image_key="webp", wds_caption_key="caption")
    assert [(r.id, r.texts[0].text) for r in src] == [("a/k0", "hello")]
    # pipe: commands and ::-joined patterns, a missing shard and a truncated one are recorded, the rest read
    good = shards / "00001.tar"
    (tmp_path / "cut.tar").write_bytes((shards / "00000.tar").read_bytes()[:600])  # inside the first jpg
    spec = f"wds:pipe:cat {good}::{tmp_path}/missing.tar::{tmp_path}/cut.tar"
    src = open_source(spec)
    ids = [r.id for r in src]
    assert ids[:2] == ["00001/000010000", "00001/000010002"]
    reasons = dict(src.skipped)
    assert "file not found" in reasons[f"shard {tmp_path}/missing.tar"]
    assert "unreadable after" in reasons[f"shard {tmp_path}/cut.tar"]
    with pytest.raises(UserError, match="none of the 2 shards"):
        open_source(f"wds:{tmp_path}/nothing/{{0..1}}.tar")
    with pytest.raises(UserError, match="unknown option"):
        open_source(f"wds:{good}", wds_img_key="jpg")


class FakeState:
    def __init__(self, index: int, count: int):
        self.process_index, self.num_processes = index, count
        self.is_main_process = self.is_local_main_process = index == 0

    def wait_for_everyone(self) -> None:
        pass


def test_wds_cache_per_process_shards_and_resume(shards, tmp_path):
    from cache_tools.config import CacheConfig
    from cache_tools.store.reader import open_cache
    from cache_tools.write.webdataset import build_per_shard, shard_cache

    spec = f"wds:{shards}/{{00000..00001}}.tar"
    out = tmp_path / "cache.h5"
    cfg = CacheConfig(encoder="towers:fake", data=spec, out=str(out), batch_size=2, num_workers=1)
    # process 1 of 2 writes shard 1 only
    build_per_shard(cfg, open_source(spec), FakeEncoder(), FakeState(1, 2), progress=False)
    assert shard_cache(out, 1, "00001").is_file() and not shard_cache(out, 0, "00000").exists()
    assert not out.exists()
    # process 0 writes shard 0, then (main) joins both in shard order
    src0 = open_source(spec)
    summary = build_per_shard(cfg, src0, FakeEncoder(), FakeState(0, 2), progress=False)
    cache = open_cache(out)
    assert list(cache.image_ids) == [
        "00000/000000000",
        "00000/000000002",
        "00000/000000003",
        "00001/000010000",
        "00001/000010002",
    ]
    assert [str(s) for s in cache.strings] == [f"a photo number {k}" for k in (0, 2, 3, 4, 6)]
    assert sorted(i for i, _ in cache.skipped) == ["00000/000000001", "00001/000010001"]
    assert summary.n_images == 5 and summary.n_skipped == 2
    assert not shard_cache(out, 0, "00000").parent.exists()
    cache.close()
    # the same command again: the finished cache is kept
    again = build_per_shard(cfg, open_source(spec), FakeEncoder(), FakeState(0, 1), progress=False)
    assert again.resumed_parts == -1


class Killed(Exception):
    pass


def test_wds_resume_skips_finished_shards(shards, tmp_path, monkeypatch):
    from cache_tools.config import CacheConfig
    from cache_tools.sources.wds import WdsSource
    from cache_tools.write.webdataset import build_per_shard

    spec = f"wds:{shards}/{{00000..00001}}.tar"
    cfg = CacheConfig(
        encoder="towers:fake", data=spec, out=str(tmp_path / "c.h5"), batch_size=2, num_workers=1
    )
    opened: list[int] = []
    die = [True]
    real = WdsSource.shard_records

    def spy(self, index, skipped):
        opened.append(index)
        if index == 1 and die[0]:
            die[0] = False
            raise Killed  # the first run dies when it reaches shard 1
        return real(self, index, skipped)

    monkeypatch.setattr(WdsSource, "shard_records", spy)
    with pytest.raises(Killed):
        build_per_shard(cfg, open_source(spec), FakeEncoder(), FakeState(0, 1), progress=False)
    opened.clear()
    summary = build_per_shard(cfg, open_source(spec), FakeEncoder(), FakeState(0, 1), progress=False)
    assert opened == [1]  # shard 0 was finished: not read again
    assert summary.n_images == 5 and summary.resumed_parts == 1


@pytest.mark.slow
def test_wds_two_real_processes_each_read_their_own_shard(shards, tmp_path):
    """Two processes under torch.distributed.run (the environment accelerate launch gives)."""
    import os
    import re
    import socket

    from cache_tools.store.reader import open_cache

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "c.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": subprocess_pythonpath()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    cmd += [
        str(TESTS / "helpers" / "wds_two_processes.py"),
        f"wds:{shards}/{{00000..00001}}.tar",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    opened = dict(re.findall(r"RANK (\d) OF 2 OPENED (\[[\d, ]*\])", res.stdout))
    assert opened == {"0": "[0]", "1": "[1]"}
    with open_cache(out) as cache:
        assert len(cache.image_ids) == 5 and str(cache.image_ids[3]) == "00001/000010000"
        assert sorted(i for i, _ in cache.skipped) == ["00000/000000001", "00001/000010001"]


def test_tflocal_cache_cli_on_wds(tiny_openclip, shards, tmp_path, capsys):
    from cache_tools.store.reader import open_cache
    from tflocal.app.cli import main

    out = tmp_path / "c.h5"
    spec = f"wds:{shards}/{{00000..00001}}.tar"
    args = ["cache", "--encoder", tiny_openclip, "--data", spec, "--out", str(out), "--quiet"]
    assert main([*args, "--batch-size", "2"]) == 0
    assert "5 images" in capsys.readouterr().out
    with open_cache(out) as cache:
        assert [str(i) for i in cache.image_ids][:2] == ["00000/000000000", "00000/000000002"]
        assert len(cache.skipped) == 2 and "source_items" not in cache.attrs
    assert main([*args, "--batch-size", "2"]) == 0  # done: kept as is
    assert main([*args, "--limit", "3"]) == 2
    assert "--limit does not apply" in capsys.readouterr().err
