"""Training on tiny synthetic caches (CPU, seconds): the binding claim, checkpoints, resume,
non-finite loss, configs and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tflocal.training.loop as train_mod
from cache_tools.store.reader import open_cache
from cache_tools.store.schema import ENCODER_KEYS
from cache_tools.write.arrays import write_arrays
from helpers.pair_batches import TOWERS
from helpers.train_setup import SMALL, binding_cache, config, read_log
from tflocal.config import load_config
from tflocal.errors import UserError
from tflocal.models import ModelConfig, build_head
from tflocal.models.checkpoint import load_head, save_checkpoint
from tflocal.pairs.candidates import build_units, make_batch
from tflocal.training.loop import NonFiniteLossError, TrainConfig, train
from tflocal.training.optim import WarmupCosine, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

@pytest.fixture(scope="module")
def bind_path(tmp_path_factory) -> Path:
    return binding_cache(tmp_path_factory.mktemp("bind") / "bind.h5")


@pytest.mark.slow
def test_tflocal_learns_binding_that_global_head_cannot(bind_path, tmp_path):
    cache = open_cache(bind_path)
    neg = np.flatnonzero(cache.positive_index >= 0)
    pos = cache.positive_index[neg]
    np.testing.assert_array_equal(
        cache.text_global(neg), cache.text_global(pos)
    )  # identical globals by construction
    common = ["optim.lr=3e-3", "optim.warmup_steps=20", "data.batch_size=16", "data.n_neg=1", "data.k_inbatch=2",
              "log_every=30", "val_every=10"]  # fmt: skip
    # the joint read-out (the segments read-out's binding test is below)
    one_layer = ["model.readout=summary", "model.depth=1", "model.width=64", "epochs=70"]  # reaches 100% near step 150 of 210
    local = train(config(bind_path, tmp_path / "local", *common, *one_layer, val_cache=str(bind_path)))
    glob = train(
        config(bind_path, tmp_path / "global", *common, "epochs=10", val_cache=str(bind_path), head="global")
    )
    assert local["best_val_acc"] == 1.0  # overfits the swap pairs
    assert glob["best_val_acc"] <= 0.5  # sees identical inputs for a caption and its swap
    # the reloaded best checkpoint reproduces the logged validation accuracy
    model, info = load_head(local["checkpoint"], cache=cache)
    assert info["step"] == local["best_step"] and info["head"] == "tflocal"
    assert info["extra"]["cache"]["path"] == str(bind_path) and info["extra"]["cache"]["n_images"] == 48
    assert info["train_cfg"]["model"]["width"] == 64 and info["model_cfg"]["max_text_tokens"] == 8
    units = build_units(cache)
    b = make_batch(cache, units, n_neg=1, k_inbatch=0, needs=model.needs, t2i=False)
    with torch.no_grad():
        m = b.score_matrix(model(b.pairs(model.needs)))
    assert bool((m[:, 0] > m[:, 1]).all())
    gmodel, _ = load_head(glob["checkpoint"], cache=cache)
    bg = make_batch(cache, units, n_neg=1, k_inbatch=0, needs=gmodel.needs, t2i=False)
    with torch.no_grad():
        mg = bg.score_matrix(gmodel(bg.pairs(gmodel.needs)))
    torch.testing.assert_close(mg[:, 0], mg[:, 1], atol=0, rtol=0)


def test_reloaded_checkpoint_scores_identically_and_refuses_other_encoders(bind_path, tmp_path):
    cache = open_cache(bind_path)
    model = build_head(
        "tflocal", ModelConfig(width=32, depth=2, heads=4, max_text_tokens=8), cache.attrs
    ).eval()
    path = save_checkpoint(tmp_path / "h.pt", model, "tflocal", ModelConfig(width=32, depth=2, heads=4, max_text_tokens=8),
                           None, cache.signature, step=7, extra={"note": "x"})  # fmt: skip
    loaded, info = load_head(path, cache=cache)
    b = make_batch(cache, build_units(cache), n_neg=1, k_inbatch=2, needs=model.needs, t2i=False)
    with torch.no_grad():
        assert torch.equal(loaded(b.pairs(model.needs)), model(b.pairs(model.needs)))
    assert info["step"] == 7 and info["extra"] == {"note": "x"} and info["cache_signature"] == cache.signature
    other = binding_cache(tmp_path / "other.h5", d_img=20, encoder="synthetic:other")
    with pytest.raises(
        UserError, match=r"encoder: trained on 'synthetic:binding', cache has 'synthetic:other'.*image_dim"
    ):
        load_head(path, cache=open_cache(other))
    with pytest.raises(UserError, match="space"):
        load_head(path, cache={**cache.attrs, "space": "joint"})
    with pytest.raises(UserError, match="not found"):
        load_head(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable tflocal checkpoint"):
        load_head(tmp_path / "junk.pt")


def test_resume_continues_step_count_and_schedule(bind_path, tmp_path):
    common = [
        "epochs=3",
        "data.batch_size=8",
        "data.val_fraction=0.25",
        "optim.warmup_steps=3",
        "log_every=1",
    ]
    full = train(config(bind_path, tmp_path / "full", *common))
    assert full["steps"] == full["total_steps"] == 12  # 36 training captions -> 4 batches of 8 per epoch
    first = train(config(bind_path, tmp_path / "resumed", *common, "stop_at_step=6"))
    assert first["steps"] == 6 and not first["finished"]
    second = train(config(bind_path, tmp_path / "resumed", *common))  # resume=auto picks up last.pt
    assert second["steps"] == 12 and second["finished"]
    lr_full = {r["step"]: r["lr"] for r in read_log(tmp_path / "full", "train")}
    lr_res = {r["step"]: r["lr"] for r in read_log(tmp_path / "resumed", "train")}
    assert sorted(lr_res) == list(range(1, 13)) and lr_res == pytest.approx(lr_full, rel=1e-12)
    loss_full = {r["step"]: r["loss"] for r in read_log(tmp_path / "full", "train")}
    loss_res = {r["step"]: r["loss"] for r in read_log(tmp_path / "resumed", "train")}
    assert loss_res == pytest.approx(loss_full, rel=1e-5)  # same batches, same weights after resuming
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=1e-5)
    # the schedule: linear warm-up then cosine to 0 over 12 steps (lr logged after each step)
    sched = WarmupCosine(3, 12)
    assert lr_full[1] == pytest.approx(3e-4 * sched(1)) and lr_full[12] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(UserError, match="does not exist"):
        train(config(bind_path, tmp_path / "fresh", *common, resume=True))
    with pytest.raises(UserError, match="resume=false"):
        train(config(bind_path, tmp_path / "resumed", *common, head="global"))


def test_non_finite_loss_stops_without_overwriting(bind_path, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    cfg = config(
        bind_path, out, "epochs=3", "data.batch_size=8", "data.val_fraction=0", "save_every=2", "log_every=1"
    )
    real = train_mod.candidate_loss
    calls = {"n": 0}

    def poisoned(scores, batch, temperature, t2i_weight=1.0):
        calls["n"] += 1
        loss, stats = real(scores, batch, temperature, t2i_weight)
        return (loss * float("nan") if calls["n"] == 4 else loss), stats

    monkeypatch.setattr(train_mod, "candidate_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="step 3"):
        train(cfg)
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["step"] == 2 and all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert read_log(out, "nonfinite")[0]["step"] == 3


def test_warmup_cosine_by_hand():
    s = WarmupCosine(warmup=4, total=12, min_ratio=0.1)
    assert [s(i) for i in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert (
        s(4) == pytest.approx(1.0) and s(8) == pytest.approx(0.1 + 0.9 * 0.5) and s(12) == pytest.approx(0.1)
    )


def test_scalar_lr_moves_the_single_number_parameters_faster_and_nothing_else():
    """optim.scalar_lr: the 0-d parameters (term weights such as a count term's, which start at 0)
    step scalar_lr times further under AdamW; every other parameter steps as with scalar_lr 1."""
    cfg = dict(width=32, depth=1, heads=4, readout="segments", count_term=True, count_form="density")

    def one_step(scalar_lr: float) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        head = build_head("tflocal", cfg, TOWERS)
        before = {k: v.detach().clone() for k, v in head.named_parameters()}
        over = [f"optim.scalar_lr={scalar_lr}", "optim.warmup_steps=0"]
        optim = load_config(TrainConfig, None, over, cache="x.h5").optim
        opt, _ = make_optimizer(head, optim, total_steps=10)
        for p in head.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
        return {k: (v.detach() - before[k]).abs() for k, v in head.named_parameters()}

    plain, fast = one_step(1.0), one_step(10.0)
    assert plain["count_scale"].item() == pytest.approx(3e-4, rel=1e-3)  # AdamW's first step: lr
    assert fast["count_scale"].item() == pytest.approx(3e-3, rel=1e-3)
    scalars = [k for k, v in plain.items() if v.ndim == 0]
    assert {"count_scale", "scale", "count_offset"} <= set(scalars)
    for k in plain:
        if k not in scalars:  # matrices (also with their decay) and vectors: unchanged
            torch.testing.assert_close(fast[k], plain[k])
    with pytest.raises(UserError, match="scalar_lr"):
        load_config(TrainConfig, None, ["optim.scalar_lr=0"], cache="x.h5")


def test_train_config_validation_and_recipes():
    for yaml_path in sorted(Path("configs/train").glob("*.yaml")):
        cfg = load_config(TrainConfig, yaml_path)
        assert cfg.head in ("tflocal", "global") and cfg.cache
    with pytest.raises(UserError, match="unknown config key 'optim.lrr'"):
        load_config(TrainConfig, None, ["optim.lrr=1"], cache="x.h5")
    with pytest.raises(UserError, match="cannot be trained"):
        load_config(TrainConfig, None, [], cache="x.h5", head="maxsim")
    assert load_config(TrainConfig, None, ["mixed_precision=no"], cache="x.h5").mixed_precision == "no"
    with pytest.raises(UserError, match="mixed_precision"):
        load_config(TrainConfig, None, ["mixed_precision=fp8"], cache="x.h5")
    with pytest.raises(UserError, match="'cache' is required"):
        load_config(TrainConfig, None, [])
    with pytest.raises(UserError, match="resume"):
        load_config(TrainConfig, None, ["resume=maybe"], cache="x.h5")


def test_cli_train_in_memory_workers_bf16(bind_path, tmp_path):
    from tflocal.app.cli import main

    out = tmp_path / "cli"
    rc = main(["train", "--cache", str(bind_path), "--out", str(out), "--head", "global", "--set", "device=cpu",
               "--set", "max_steps=2", "--set", "data.batch_size=8", "--set", "data.in_memory=true",
               "--set", "data.num_workers=1", "--set", "data.shuffle_chunk=4", "--set", "mixed_precision=bf16",
               *[x for s in SMALL for x in ("--set", s)]])  # fmt: skip
    assert rc == 0
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "log.jsonl", "last.pt", "best.pt"}
    val = read_log(out, "val")
    assert len(val) == 1 and 0 <= val[0]["val_pair_acc"] <= 1 and val[0]["val_pairs"] == 2  # 5% of 48 images
    assert val[0]["val_pair_acc/swap"] == val[0]["val_pair_acc"]  # every negative here is a swap
    assert not [k for k in val[0] if k.startswith("val_pair_acc/") and k != "val_pair_acc/swap"]
    assert main(["train", "--cache", str(tmp_path / "nope.h5"), "--out", str(out)]) == 2


def test_checkpoint_records_the_resolved_text_length(tmp_path):
    """A head whose text position table was sized from the cache (max_text_tokens unset) reloads."""
    from tflocal.models import build_head
    from tflocal.models.checkpoint import load_head, save_checkpoint
    from tflocal.models.config import ModelConfig

    attrs = {
        "encoder": "x",
        "space": "joint",
        "global_space": "joint",
        "image_dim": 8,
        "text_dim": 8,
        "global_image_dim": 8,
        "global_text_dim": 8,
        "grid": [2, 2],
        "context_length": 9,
    }
    cfg = ModelConfig(width=16, depth=1, heads=2)
    model = build_head("tflocal", cfg, attrs)
    sig = {k: attrs[k] for k in ENCODER_KEYS}
    save_checkpoint(tmp_path / "h.pt", model, "tflocal", cfg, None, sig, step=1)
    again, info = load_head(tmp_path / "h.pt")
    assert info["model_cfg"]["max_text_tokens"] == 9 and again.max_text == 9


COLORS, SHAPES = ["red", "blue", "green", "yellow"], ["circle", "square", "star", "diamond"]


def phrase_cache(
    path: Path, n_images: int, held_out: bool, seed: int = 0, d_img: int = 24, d_txt: int = 16
) -> Path:
    """Like :func:`binding_cache` but with real words, so the parser finds the objects:
    "a <color> <shape> and a <color> <shape>", negative = the colors swapped. Word vectors are
    fixed per word (seed 0) whatever ``seed`` draws the scenes. ``held_out=False``: the pair
    (red, circle) never occurs; True: every image has a red circle."""
    words = np.random.default_rng(0)
    col_i, shp_i = words.normal(size=(4, d_img)), words.normal(size=(4, d_img))
    vocab = {w: words.normal(size=d_txt) for w in [*COLORS, *SHAPES, "a", "and"]}
    bg = words.normal(size=d_img)
    rng = np.random.default_rng(seed)
    patches, texts, pieces, tokens, image_index, positive_index, text_global = [], [], [], [], [], [], []
    for i in range(n_images):
        while True:
            (ca, cb), (sa, sb) = rng.choice(4, 2, replace=False), rng.choice(4, 2, replace=False)
            has = (ca, sa) == (0, 0) or (cb, sb) == (0, 0)
            if has == held_out and (cb, sa) != (0, 0) and (ca, sb) != (0, 0):  # the swap keeps it out too
                break
        where = rng.choice(4, 2, replace=False)
        p = np.tile(bg, (4, 1))
        p[where[0]], p[where[1]] = col_i[ca] + shp_i[sa], col_i[cb] + shp_i[sb]
        patches.append(p)
        for c1, c2 in [(ca, cb), (cb, ca)]:
            ws = ["a", COLORS[c1], SHAPES[sa], "and", "a", COLORS[c2], SHAPES[sb]]
            tok = np.stack([vocab[w] for w in ws]).astype(np.float16).astype(np.float32)
            texts.append(" ".join(ws))
            pieces.append(ws)
            tokens.append(tok)
            image_index.append(i)
        positive_index += [-1, len(texts) - 2]
        text_global += [tokens[-2].mean(0)] * 2
    patches = np.asarray(patches, np.float16).astype(np.float32)
    meta = {"encoder": "synthetic:phrases", "grid": [2, 2], "context_length": 8, "space": "hidden", "global_space": "none"}  # fmt: skip
    return write_arrays(
        path, meta, image_ids=[f"i{i}" for i in range(n_images)], patches=patches,
        image_global=patches.mean(1), texts=texts, tokens=tokens, text_global=np.stack(text_global),
        image_index=image_index, positive_index=positive_index, op=["", "swap"] * n_images,
        token_strings=pieces, kind=["", "attribute"] * n_images,
    )  # fmt: skip


def test_segments_readout_binds_and_carries_over_to_a_held_out_pair(tmp_path):
    """Trained without any red circle, the segments read-out tells "a red circle and a blue
    square" from its color swap on images that all hold a red circle; the global head cannot."""
    train_path = phrase_cache(tmp_path / "train.h5", 64, held_out=False)
    test_path = phrase_cache(tmp_path / "ood.h5", 32, held_out=True, seed=1)
    common = ["optim.lr=3e-3", "optim.warmup_steps=10", "data.batch_size=16", "data.n_neg=1", "data.k_inbatch=0",
              "epochs=12", "val_every=1000", "log_every=1000"]  # fmt: skip
    seg = train(config(train_path, tmp_path / "seg", *common, "model.readout=segments", "model.depth=0",
                       val_cache=str(test_path)))  # fmt: skip
    glob = train(config(train_path, tmp_path / "glob", *common, head="global", val_cache=str(test_path)))
    assert seg["best_val_acc"] >= 0.9, seg["best_val_acc"]
    assert glob["best_val_acc"] <= 0.5
    test = open_cache(test_path)
    model, info = load_head(seg["checkpoint"], cache=test)
    assert info["model_cfg"]["readout"] == "segments" and type(model).__name__ == "SegmentHead"
    # the scorer's read path parses the cached captions too: every positive beats its swap
    from tflocal.pairs.assemble import from_cache

    neg = np.flatnonzero(test.positive_index >= 0)
    pos = test.positive_index[neg]
    with torch.no_grad():
        sp = model(from_cache(test, test.image_index[pos], pos, model.needs).batch)
        sn = model(from_cache(test, test.image_index[neg], neg, model.needs).batch)
    assert bool((sp > sn).all())


def test_the_loop_adds_a_heads_auxiliary_losses_on_its_true_pairs(bind_path, tmp_path, monkeypatch):
    """A head's ``auxiliary_losses`` get the forward's true pairs (column 0 of each candidate
    set) and their sum joins the loss that is logged and minimized."""
    seen: list[tuple[int, int]] = []
    real_step = train_mod.train_step

    def spy_step(run, batch, epoch):
        head = run.raw

        def losses(positive):
            seen.append((int(positive.sum()), int((batch.cols == 0).sum())))
            assert torch.equal(positive.cpu(), (batch.cols == 0).cpu())
            return {"probe": torch.tensor(100.0)}

        monkeypatch.setattr(head, "auxiliary_losses", losses)
        return real_step(run, batch, epoch)

    monkeypatch.setattr(train_mod, "train_step", spy_step)
    common = ["model.readout=segments", "model.depth=1", "model.width=32", "epochs=1", "data.batch_size=16",
              "data.n_neg=1", "log_every=1", "progress=false"]  # fmt: skip
    train(config(bind_path, tmp_path / "aux", *common))
    assert seen and all(p == n and p > 0 for p, n in seen)
    losses = [r["loss"] for r in read_log(tmp_path / "aux", "train")]
    assert losses and min(losses) > 100.0  # the constant 100 is inside every logged loss
