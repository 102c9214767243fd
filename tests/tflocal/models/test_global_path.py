"""The global path of TFLocal's read-outs: it is the global head, it is trained on its own loss,
a caption with no parsed structure scores as the global head, old checkpoints load without it,
and on a cache whose captions carry no structure TFLocal keeps the global head's accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cache_tools.write.arrays import write_arrays
from helpers.pair_batches import TOWERS, make_batch
from tflocal.config import load_config
from tflocal.errors import UserError
from tflocal.models import ModelConfig, PairBatch, build_head
from tflocal.models.checkpoint import load_checkpoint, load_head, save_checkpoint
from tflocal.training.loop import TrainConfig, train

READOUTS = ["segments", "summary", "summary+align"]


def no_objects(batch: PairBatch) -> PairBatch:
    """The batch with an empty parse: no object phrase, no relation."""
    B, T = batch.tokens.shape[:2]
    batch.segments = torch.zeros(B, 1, T, dtype=torch.bool)
    batch.relation_tokens = torch.zeros(B, 1, T, dtype=torch.bool)
    batch.relations = torch.full((B, 1, 2), -1, dtype=torch.long)
    return batch


@pytest.mark.parametrize("form", ["mlp", "dual"])
@pytest.mark.parametrize("readout", READOUTS)
def test_global_path_is_the_global_head_and_needs_the_globals(readout, form):
    cfg = {"width": 32, "depth": 1, "heads": 4, "readout": readout, "global_form": form}
    torch.manual_seed(3)
    glob = build_head("global", cfg, TOWERS)
    torch.manual_seed(3)
    head = build_head("tflocal", cfg, TOWERS)
    assert type(glob).__name__ == {"mlp": "GlobalHead", "dual": "DualGlobalHead"}[form]
    assert type(head.global_path.head) is type(glob)
    assert {"image_global", "text_global"} <= set(head.needs)
    ref = glob.state_dict()
    assert {
        k: torch.equal(v, ref[k]) for k, v in head.global_path.head.state_dict().items()
    } == dict.fromkeys(ref, True)
    assert set(head.mix_weights()) >= {"mix/global"}
    off = build_head("tflocal", {**cfg, "global_path": False}, TOWERS)
    assert off.global_path is None and not {"image_global", "text_global"} & set(off.needs)
    no_globals = {**TOWERS, "global_image_dim": 0, "global_text_dim": 0}
    assert build_head("tflocal", cfg, no_globals).cfg.global_path is False  # nothing to build it from


@pytest.mark.parametrize("form", ["mlp", "dual"])
def test_a_caption_without_parsed_objects_scores_as_the_global_head(form):
    """A fresh segments read-out: word-level fallback weight 0, global weight 1 -> exactly g."""
    cfg = {"width": 32, "depth": 1, "heads": 4, "readout": "segments", "global_form": form}
    torch.manual_seed(0)
    glob = build_head("global", cfg, TOWERS).eval()
    torch.manual_seed(0)
    head = build_head("tflocal", cfg, TOWERS).eval()
    b = no_objects(make_batch(TOWERS))
    with torch.no_grad():
        torch.testing.assert_close(head(b), glob(b), atol=0, rtol=0)
    assert head.mix_weights() == {
        "mix/objects": 10.0,
        "mix/relations": 1.0,
        "mix/global": 1.0,
        "mix/words": 0.0,
    }


@pytest.mark.parametrize("readout", READOUTS)
def test_global_path_trains_on_its_own_loss_only(readout):
    """The mixed score does not backpropagate into the global head (it is detached there); the
    training-mode forward hands g (and, for segments, the localized score) to the loop for their
    own losses, once."""
    torch.manual_seed(0)
    head = build_head("tflocal", {"width": 32, "depth": 1, "heads": 4, "readout": readout}, TOWERS).train()
    assert head.cfg.local_loss is (readout == "segments")
    b = no_objects(make_batch(TOWERS)) if readout == "segments" else make_batch(TOWERS)
    mixed = head(b)
    mixed.sum().backward(retain_graph=True)
    assert all(p.grad is None for p in head.global_path.head.parameters())
    assert head.global_path.weight.grad is not None
    aux = head.auxiliary_scores()
    assert set(aux) == ({"global", "local"} if readout == "segments" else {"global"})
    assert aux["global"].shape == (3,) and head.auxiliary_scores() == {}
    if "local" in aux:  # the localized score: the mixed one less the global term
        torch.testing.assert_close(aux["local"], mixed - head.global_path.weight * aux["global"])
    aux["global"].sum().backward()
    assert all(p.grad is not None for p in head.global_path.head.parameters())
    with torch.no_grad():
        head(b)
    assert head.auxiliary_scores() == {}  # nothing kept outside training


def test_checkpoints_without_the_key_load_without_a_global_path(tmp_path):
    cfg = ModelConfig(width=32, depth=1, heads=4, readout="segments", max_text_tokens=8, global_path=False)
    head = build_head("tflocal", cfg, TOWERS).eval()
    path = save_checkpoint(tmp_path / "old.pt", head, "tflocal", cfg, None, dict(TOWERS), step=1)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["model_cfg"]["global_path"]  # as written before the key existed
    torch.save(ckpt, path)
    assert load_checkpoint(path)["model_cfg"]["global_path"] is False
    loaded, info = load_head(path)
    assert loaded.global_path is None and info["model_cfg"]["global_path"] is False
    b = no_objects(make_batch(TOWERS))
    with torch.no_grad():
        torch.testing.assert_close(loaded(b), head(b))


def noise_cache(
    path: Path, n_images: int, seed: int, n_neg: int = 3, d_img: int = 24, d_txt: int = 16
) -> Path:
    """Captions of made-up words (no parser finds an object), patches and tokens pure noise; only
    the globals carry signal: a positive's text global is a fixed linear map of its image global
    plus noise, a negative's the map of a random vector plus noise (so no head is perfect)."""
    W = np.random.default_rng(123).normal(size=(d_img, d_txt)) / np.sqrt(d_img)  # shared by all caches
    rng = np.random.default_rng(seed)
    patches, texts, pieces, tokens, image_index, positive_index, ops, tg, ig = ([] for _ in range(9))
    for i in range(n_images):
        patches.append(rng.normal(size=(4, d_img)))
        ig.append(rng.normal(size=d_img))
        for k in range(1 + n_neg):
            tg.append((ig[-1] if k == 0 else rng.normal(size=d_img)) @ W + rng.normal(size=d_txt))
            words = [f"zq{rng.integers(1000)}" for _ in range(4)]
            texts.append(" ".join(words))
            pieces.append(words)
            tokens.append(rng.normal(size=(4, d_txt)).astype(np.float16).astype(np.float32))
            image_index.append(i)
            positive_index.append(-1 if k == 0 else len(texts) - 1 - k)
            ops.append("" if k == 0 else "replace")
    meta = {"encoder": "synthetic:noise", "grid": [2, 2], "context_length": 8, "space": "hidden", "global_space": "none"}  # fmt: skip
    return write_arrays(
        path, meta, image_ids=[f"i{i}" for i in range(n_images)],
        patches=np.asarray(patches, np.float16).astype(np.float32), image_global=np.asarray(ig, np.float32),
        texts=texts, tokens=tokens, text_global=np.asarray(tg, np.float32), image_index=image_index,
        positive_index=positive_index, op=ops, token_strings=pieces, kind=[""] * len(texts),
    )  # fmt: skip


@pytest.mark.slow
def test_without_parseable_structure_tflocal_keeps_the_global_heads_accuracy(tmp_path):
    """Measured (seeds 0/1, 128 train / 64 validation images, 192 pairs): global head 0.870;
    segments 0.870 with the global path (local_loss on or off), 0.604 without; summary 0.859 with
    (local_loss off, its default), 0.818 with local_loss on, 0.510 without a global path."""
    torch.set_num_threads(1)
    train_path, val_path = noise_cache(tmp_path / "train.h5", 128, 0), noise_cache(tmp_path / "val.h5", 64, 1)
    common = ["model.width=32", "model.depth=1", "model.heads=4", "data.num_workers=0", "progress=false",
              "optim.lr=3e-3", "optim.warmup_steps=10", "data.batch_size=16", "data.n_neg=3",
              "data.k_inbatch=0", "data.t2i=false", "epochs=8", "log_every=8"]  # fmt: skip

    def acc(name: str, head: str, *extra: str) -> float:
        cfg = load_config(TrainConfig, None, [*common, *extra], cache=str(train_path), val_cache=str(val_path),
                          out_dir=str(tmp_path / name), device="cpu", head=head)  # fmt: skip
        return float(train(cfg)["best_val_acc"])

    glob = acc("global", "global")
    seg = acc("seg", "tflocal", "model.readout=segments")
    summary = acc("summary", "tflocal", "model.readout=summary")
    seg_off = acc("seg_off", "tflocal", "model.readout=segments", "model.global_path=false")
    assert glob > 0.75  # the globals carry the signal
    assert abs(seg - glob) <= 0.02 and abs(summary - glob) <= 0.04, (glob, seg, summary)
    assert seg_off < glob - 0.1  # what the global path fixes
    logged = [json.loads(x) for x in (tmp_path / "seg" / "log.jsonl").read_text().splitlines()]
    mix = [r for r in logged if r["event"] == "train"][-1]
    assert {"mix/global", "mix/objects", "mix/relations", "mix/words"} <= set(mix) and mix["mix/global"] > 0


def test_the_dual_global_head_is_separable():
    """global_form dual: the score is the cosine of an image side and a text side computed
    apart (scaled); a caption repeated for every pair (a stride-0 view, as a query against its
    candidates) runs its tower once and scores as the same caption copied per pair; precomputed
    image vectors in the PairBatch are what it reads."""
    torch.manual_seed(0)
    glob = build_head("global", {"width": 32, "depth": 1, "heads": 4, "global_form": "dual"}, TOWERS).eval()
    assert glob.separable and set(glob.needs) == {"image_global", "text_global"}
    b = make_batch(TOWERS)
    with torch.no_grad():
        a, t = glob.encode_image_global(b.image_global), glob.encode_text_global(b.text_global)
        torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))
        torch.testing.assert_close(glob(b), 10.0 * (a * t).sum(-1))
        one = PairBatch(image_global=b.image_global, text_global=b.text_global[:1].expand(3, -1))
        copied = PairBatch(image_global=b.image_global, text_global=b.text_global[:1].repeat(3, 1))
        torch.testing.assert_close(glob(one), glob(copied))
        given = PairBatch(image_global_vectors=a.flip(0), text_global=b.text_global)
        torch.testing.assert_close(glob(given), 10.0 * (a.flip(0) * t).sum(-1))
    with pytest.raises(UserError, match="global_form"):
        ModelConfig(global_form="bilinear")
