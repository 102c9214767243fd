"""`tflocal serve`: the JSON API on a tiny cache, through FastAPI's test client and a real server."""

from __future__ import annotations

import base64
import io
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="tflocal serve needs fastapi (pip install 'tflocal[serve]')")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from cache_tools.store.reader import open_cache  # noqa: E402
from helpers.serve_setup import build, caption, running_server
from tflocal.app.cli import main  # noqa: E402
from tflocal.app.serve import load_engine, parse_scorer, serve_command  # noqa: E402
from tflocal.app.serve.app import Limits, create_app  # noqa: E402

QUERY = caption(0)  # "a red square left of a blue circle"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def engine(built):
    return load_engine(built["cache"], ["cosine", f"local={built['ckpt']}", "maxsim"], k_rerank=6)


@pytest.fixture(scope="module")
def client(engine):
    return TestClient(create_app(engine, Limits(max_k=20, max_query_chars=120, max_body_bytes=200_000)))


def _norm(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_health_names_scorers_and_first_stage(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["images"] == 12 and h["first_stage"] == "faiss"
    assert h["scorers"] == ["cosine", "local", "maxsim"]
    assert "local" in h["heatmap_scorers"]


def test_search_ranks_per_scorer_like_the_scorers_themselves(client, built, engine):
    r = client.post("/search", json={"query": QUERY, "k": 4, "scorers": ["cosine", "local"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["direction"] == "t2i" and out["candidates"] == 6 and set(out["results"]) == {"cosine", "local"}
    enc = built["encoder"]
    with open_cache(built["cache"]) as cache:
        q = _norm(enc.encode_texts([QUERY]).global_.detach().numpy())[0]
        cos = _norm(cache.image_global(range(cache.n_images))) @ q
        ids = [str(i) for i in cache.image_ids]
    cand = np.argsort(-cos)[:6]
    hits = out["results"]["cosine"]
    assert [h["id"] for h in hits] == [ids[i] for i in cand[:4]]
    np.testing.assert_allclose([h["score"] for h in hits], cos[cand[:4]], atol=1e-5)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert all(h["url"] == f"/image/{h['id']}" for h in hits)
    # TFLocal re-ranks the same six candidates by its own score (its region vectors computed
    # once at start-up: the late-interaction copy must give the plain scorer's numbers)
    assert engine._pre["local"][0] is not engine.scorers["local"]
    assert engine._pre["cosine"][0] is engine.scorers["cosine"]
    local = engine.scorers["local"].score_text_query(QUERY, cand)
    want = cand[np.argsort(-local, kind="stable")[:4]]
    got = out["results"]["local"]
    assert [h["row"] for h in got] == want.tolist()
    np.testing.assert_allclose([h["score"] for h in got], np.sort(local)[::-1][:4], atol=1e-5)
    np.testing.assert_allclose([h["first_stage"] for h in got], cos[want], atol=1e-5)
    # default: every scorer
    assert set(client.post("/search", json={"query": QUERY}).json()["results"]) == {
        "cosine",
        "local",
        "maxsim",
    }


def test_image_served_from_the_cache_source(client, built):
    r = client.get("/image/img03")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (built["data"] / "imgs" / "03.png").read_bytes()
    r = client.get("/image/nope")
    assert r.status_code == 404 and "unknown image id 'nope'" in r.json()["error"]


def test_heatmap_png_and_weights(client, engine):
    r = client.get("/heatmap/img05", params={"q": QUERY})
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n" and r.headers["x-scorer"] == "local"
    j = client.get("/heatmap/img05", params={"q": QUERY, "scorer": "local", "format": "json"}).json()
    assert j["scorer"] == "local" and j["grid"] == [int(g) for g in engine.cache.attrs["grid"]]
    w = np.array(j["weights"])
    assert w.shape == (len(j["words"]), j["grid"][0] * j["grid"][1])
    assert {"red", "square", "blue", "circle"} <= {x.replace("</w>", "") for x in j["words"]}
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-3)
    # the two colour phrases look at different places for different words: maps are not uniform
    assert w.std() > 0
    r = client.get("/heatmap/img05", params={"q": QUERY, "scorer": "nope"})
    assert r.status_code == 400 and "served here" in r.json()["error"]


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"query": "   "}, 400, "query is empty"),
        ({"query": QUERY, "k": 0}, 422, "k must be an integer in [1, 20]"),
        ({"query": QUERY, "k": 1000}, 422, "k must be"),
        ({"query": QUERY, "k": "5"}, 422, "k must be"),
        ({"query": QUERY, "scorers": ["nope"]}, 400, "unknown scorer 'nope'"),
        ({"query": "x" * 500}, 413, "at most 120"),
        ({"query": 3}, 422, "query must be a string"),
        ({}, 422, "exactly one of query"),
        ({"query": QUERY, "image": "aGk="}, 422, "exactly one of query"),
        ({"image": "not base64!"}, 400, "not valid base64"),
        ({"image": base64.b64encode(b"hello").decode()}, 400, "not a readable picture"),
        ({"query": QUERY, "limit": 3}, 422, "unknown field(s) limit"),
        ([1, 2], 422, "JSON object"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(client, body, status, words):
    r = client.post("/search", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and "Traceback" not in r.text


def test_malformed_oversized_and_unrouted(client):
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    r = client.post("/search", content=b"x" * 300_000)
    assert r.status_code == 413 and "request body over" in r.json()["error"]
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]
    r = client.get("/heatmap/img01")
    assert r.status_code == 400 and "q is empty" in r.json()["error"]


def test_unexpected_failure_is_a_500_without_traceback(engine, monkeypatch):
    c = TestClient(create_app(engine), raise_server_exceptions=False)
    monkeypatch.setattr(engine, "search", lambda *a: 1 / 0)
    r = c.post("/search", json={"query": QUERY})
    assert r.status_code == 500 and r.json() == {
        "error": "internal error (ZeroDivisionError); the server log has the details"
    }


def test_image_query_ranks_cached_captions(client, built, engine):
    png = (built["data"] / "imgs" / "03.png").read_bytes()
    r = client.post(
        "/search", json={"image": base64.b64encode(png).decode(), "k": 3, "scorers": ["cosine", "local"]}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    rows, strings = engine.caption_rows()
    assert out["direction"] == "i2t" and out["candidates"] == len(strings) == 24
    from PIL import Image

    enc = built["encoder"]
    pix = enc.preprocess(Image.open(io.BytesIO(png)).convert("RGB"))[None]
    img_g = _norm(enc.encode_images(pix).global_.detach().numpy())
    cos = _norm(engine.cache.text_global(rows)) @ img_g[0]
    assert [h["caption"] for h in out["results"]["cosine"]] == [strings[j] for j in np.argsort(-cos)[:3]]
    local = engine.scorers["local"].score_pairs(
        [Image.open(io.BytesIO(png))] * 3, [h["caption"] for h in out["results"]["local"]]
    )
    np.testing.assert_allclose([h["score"] for h in out["results"]["local"]], local, atol=1e-4)


def test_split_and_missing_images(built, tmp_path):
    eng = load_engine(built["cache"], ["cosine"], split="held")
    c = TestClient(create_app(eng))
    hits = c.post("/search", json={"query": QUERY, "k": 10}).json()["results"]["cosine"]
    assert sorted(h["id"] for h in hits) == ["img08", "img09", "img10", "img11"]
    with pytest.raises(Exception, match="splits found: held, seen"):
        load_engine(built["cache"], ["cosine"], split="nope")
    # the raw images moved away: search still works, images answer 404 with the reason
    moved = tmp_path / "c.h5"
    shutil.copy(built["cache"], moved)
    eng = load_engine(moved, ["cosine"], source=f"jsonl:{tmp_path / 'gone'}")
    c = TestClient(create_app(eng))
    assert c.post("/search", json={"query": QUERY, "k": 2}).status_code == 200
    r = c.get("/image/img01")
    assert r.status_code == 404 and "image unavailable" in r.json()["error"] and "gone" in r.json()["error"]


def test_concurrent_clients_on_a_real_server(engine):
    import httpx

    queries = [caption(i) for i in range(8)]
    app = create_app(engine)
    with running_server(app) as base:
        serial = [httpx.post(base + "/search", json={"query": q, "k": 5}, timeout=60).json() for q in queries]
        with ThreadPoolExecutor(8) as pool:
            par = list(
                pool.map(
                    lambda q: httpx.post(base + "/search", json={"query": q, "k": 5}, timeout=60), queries * 3
                )
            )
        assert all(r.status_code == 200 for r in par)
        for i, r in enumerate(par):
            assert r.json()["results"] == serial[i % 8]["results"]
        assert httpx.get(base + "/").text.startswith("<!doctype html>")


def test_command_line(built, capsys):
    assert parse_scorer("TFLocal=runs/x/best.pt") == ("TFLocal", "runs/x/best.pt")
    assert parse_scorer("cosine") == ("", "cosine")
    cmd = serve_command(
        "runs/q/caches/test.h5", {"global head": "runs/q/g.pt", "TFLocal": "runs/q/t.pt"}, "test_ood"
    )
    assert cmd == (
        "tflocal serve --cache runs/q/caches/test.h5 --split test_ood "
        "--scorer 'global head=runs/q/g.pt' --scorer TFLocal=runs/q/t.pt"
    )
    import shlex

    from tflocal.app.cli import build_parser
    from tflocal.app.flags import config_from_args
    from tflocal.app.serve.config import ServeConfig

    cfg = config_from_args(ServeConfig, build_parser("serve").parse_args(shlex.split(cmd)[1:]))
    assert cfg.split == "test_ood" and cfg.scorer == ["global head=runs/q/g.pt", "TFLocal=runs/q/t.pt"]
    assert main(["serve", "--cache", str(built["cache"]) + ".nope", "--scorer", "cosine"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["serve", "--cache", str(built["cache"]), "--scorer", "cosine", "--port", "0"]) == 2
    assert "--port must be" in capsys.readouterr().err


def test_late_interaction_copy_reads_index_vectors_and_runs_the_text_tower_once(engine, monkeypatch):
    """The serve copy of a segments scorer holds the index tower's image vectors, and one query
    against many images runs the head's text tower once (tflocal.retrieval.score_stored)."""
    import torch

    from tflocal.app.serve.fast import StoredVectorsScorer
    from tflocal.retrieval.head_sides import tower_of

    fast, fields = engine._pre["local"]
    head = engine.scorers["local"].head
    assert isinstance(fast, StoredVectorsScorer) and fast.head is head
    rows = engine.rows
    with torch.inference_mode():
        want = tower_of(head).image(head, *_patches(engine.cache, rows))
    np.testing.assert_allclose(fields["patches"].numpy(), want.numpy(), atol=1e-6)
    calls = []
    encode_text = head.encode_text
    monkeypatch.setattr(head, "encode_text", lambda *a: calls.append(a[0].shape[0]) or encode_text(*a))
    got = engine._score("local", QUERY, engine._encode_query(QUERY, ["local"]), rows)
    assert calls == [1]  # one caption, not one per image
    np.testing.assert_allclose(got, engine.scorers["local"].score_text_query(QUERY, rows), atol=1e-4)


def _patches(cache, rows):
    import torch

    p = torch.from_numpy(np.asarray(cache.patches(rows), dtype=np.float32))
    return p, torch.ones(p.shape[:2], dtype=torch.bool)


def test_a_separable_global_path_is_served_from_its_stored_image_side(built, tmp_path):
    """global_form dual: the serve copy also holds the global path's image side [N, d], computed
    at start-up, and scores a query as the plain scorer does."""
    import torch

    from tflocal.app.serve.fast import StoredVectorsScorer
    from tflocal.models import ModelConfig, build_head
    from tflocal.models.checkpoint import save_checkpoint

    with open_cache(built["cache"]) as cache:
        cfg = ModelConfig(width=16, depth=1, heads=2, readout="segments", global_form="dual",
                          max_text_tokens=int(cache.attrs["context_length"]))  # fmt: skip
        torch.manual_seed(1)
        head = build_head("tflocal", cfg, cache.attrs).eval()
        ckpt = save_checkpoint(tmp_path / "dual.pt", head, "tflocal", cfg, None, cache.signature, step=1)
    eng = load_engine(built["cache"], [f"dual={ckpt}"], k_rerank=6)
    fast, fields = eng._pre["dual"]
    assert isinstance(fast, StoredVectorsScorer)
    assert tuple(fields["image_global_vectors"].shape) == (len(eng.rows), 16)
    got = eng._score("dual", QUERY, eng._encode_query(QUERY, ["dual"]), eng.rows)
    np.testing.assert_allclose(got, eng.scorers["dual"].score_text_query(QUERY, eng.rows), atol=1e-4)
