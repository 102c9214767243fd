"""The training recipe: what ``tflocal train`` and ``configs/train/*.yaml`` hold.

:class:`TrainConfig` with its sections ``model`` (:class:`~tflocal.models.config.ModelConfig`),
``optim`` (:class:`OptimConfig`) and ``data`` (:class:`DataConfig`); every check is in
``__post_init__``. ``out`` was called ``out_dir`` before; old recipes are still read.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from tflocal.errors import UserError
from tflocal.models import TRAINABLE
from tflocal.models.config import ModelConfig

MixedPrecision = Literal["no", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]
MIXED_PRECISION = typing.get_args(MixedPrecision)
DEVICES = typing.get_args(Device)


@dataclass
class OptimConfig:
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.05
    """AdamW weight decay (not applied to biases, norms, embeddings and position tables)."""
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 200
    """Linear warm-up from 0 to lr over this many steps, then cosine decay to min_lr_ratio*lr."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of lr."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""
    scalar_lr: float | None = None
    """Learning-rate multiplier of the head's single-number parameters (the weights of the score's
    terms, temperatures, offsets). AdamW moves a parameter by about lr per step whatever its size,
    so a term weight that starts at 0 can reach at most about lr x steps (about 2 in the
    quickstarts' recipes). None: 1 (the 3D quickstart fills in 10)."""

    def __post_init__(self) -> None:
        bad = [k for k, v in dataclasses.asdict(self).items() if v is not None and not math.isfinite(v)]
        if bad:
            raise UserError(
                f"optim.{bad[0]}={getattr(self, bad[0])} is not a finite number: give a real value"
            )
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise UserError("optim: lr must be > 0; weight_decay, warmup_steps and grad_clip >= 0")
        if self.scalar_lr is not None and self.scalar_lr <= 0:
            raise UserError(f"optim.scalar_lr={self.scalar_lr} must be > 0 (1 = the lr of the rest)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"optim.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")


@dataclass
class DataConfig:
    batch_size: int = 32
    """Units (positive captions with their image) per step and process."""
    n_neg: int = 4
    """Hard negatives per candidate set (sampled each step when a caption has more)."""
    k_inbatch: int = 3
    """In-batch negatives per set: captions of other images most similar by global embedding
    (image-text cosine; caption-caption cosine for towers with global_space 'none')."""
    t2i: bool = True
    """Also a text->image set per caption whose image has negative images (same group)."""
    t2i_weight: float = 1.0
    """Weight of the text->image loss."""
    val_fraction: float = 0.05
    """Fraction of images held out for validation when val_cache is not given (0 = none)."""
    val_batch_size: int = 64
    num_workers: int = 2
    """DataLoader worker processes (each opens the cache itself); 0 reads in the main process."""
    in_memory: bool = False
    """Load the whole cache payload into RAM first (fast random access when it fits)."""
    shuffle: str = "auto"
    """Epoch order: 'full' (a permutation of all units), 'chunk' (blocks of units shuffled and
    shuffled within: contiguous HDF5 reads for caches on disk), or 'auto': chunk when the cache is
    read from disk (in_memory false) and its payload (patches, tokens, globals) is larger than
    half of MemAvailable, full otherwise, so caches that fit in RAM keep the full shuffle."""
    shuffle_chunk: int = 0
    """> 0: chunk-level shuffle in blocks of this many units, whatever ``shuffle`` says; 0: the
    block is units per image x the cache's ``block_rows`` when chunk shuffle is picked."""
    max_negs: int = 64
    """Most hard negatives kept per caption (validation uses all of these)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.val_batch_size < 1:
            raise UserError("data.batch_size and data.val_batch_size must be >= 1")
        if self.n_neg < 0 or self.k_inbatch < 0 or self.num_workers < 0 or self.shuffle_chunk < 0:
            raise UserError("data.n_neg, k_inbatch, num_workers and shuffle_chunk must be >= 0")
        if self.shuffle not in ("auto", "full", "chunk"):
            raise UserError(f"data.shuffle={self.shuffle!r} must be one of: auto, full, chunk")
        if self.n_neg == 0 and self.k_inbatch == 0:
            raise UserError(
                "data.n_neg and data.k_inbatch are both 0: a candidate set needs at least one negative"
            )
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")


@dataclass
class TrainConfig:
    cache: str = ""
    """Training cache (HDF5 file written by `tflocal cache`)."""
    val_cache: str | None = None
    """Validation cache of the same encoder; None = hold out data.val_fraction of the images."""
    head: str = "tflocal"
    """'tflocal' (the localized head over patches and caption tokens: by default its ``segments``
    read-out, aligning caption segments with image regions; ``model.readout: summary`` is the
    joint cross-encoder read-out), 'tflocal-segments' / 'tflocal-joint' (one read-out by name) or
    'global' (global embeddings only)."""
    out: str = "runs/train"
    """Output folder: config.yaml, log.jsonl, last.pt and best.pt (``out_dir`` in old recipes)."""
    epochs: int = 10
    max_steps: int | None = None
    """Total optimizer steps; None = epochs x batches per epoch. Sets the schedule length."""
    stop_at_step: int | None = None
    """Stop (as if interrupted, saving last.pt) when this step is reached; the schedule stays that
    of the full run, and `resume` continues it. For time-boxed jobs."""
    temperature: float = 1.0
    """Scores are divided by it before the cross-entropy over each candidate set."""
    mixed_precision: MixedPrecision = "no"
    """'no', 'bf16' or 'fp16' (accelerate autocast; fp16 uses a gradient scaler)."""
    seed: int = 0
    deterministic: bool = True
    """CPU runs: ``torch.use_deterministic_algorithms(True)`` while training (warn-only; the
    caller's setting is restored after), so a kernel with a run-to-run order of float additions
    (e.g. multi-threaded atomic adds) takes its deterministic path. The heads are bit-reproducible
    for a fixed seed without it; it guards ops added later, at a small cost per training step
    (``bench/train_determinism.py`` measures it). CUDA runs are left as they are (GPU kernels not measured here)."""
    val_every: int = 1
    """Validate every this many epochs (and always at the end)."""
    log_every: int = 20
    """Steps between log.jsonl records and progress-bar updates."""
    save_every: int | None = None
    """Also save last.pt every this many steps (always at each epoch end)."""
    resume: bool | str = "auto"
    """'auto': continue from out/last.pt when it exists; true: it must exist; false: start over
    (refused when out holds an earlier run, unless overwrite)."""
    overwrite: bool = False
    """Replace an earlier run in out (its checkpoints and log) instead of refusing to start."""
    device: Device = "auto"
    """'auto', 'cpu' or 'cuda'."""
    progress: bool = True
    """Show a progress bar (pairs/s and loss)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)

    RENAMED: ClassVar[dict[str, str]] = {"out_dir": "out"}
    """Old key -> new key, still read from recipes (see :func:`tflocal.config.from_dict`)."""

    def __post_init__(self) -> None:
        if not self.cache:
            raise UserError("config key 'cache' is required: the HDF5 cache to train on")
        if self.head not in TRAINABLE:
            raise UserError(f"head={self.head!r} cannot be trained; choices: {', '.join(TRAINABLE)}")
        if self.mixed_precision in ("False", "false", "fp32"):  # YAML reads a bare `no` as false
            self.mixed_precision = "no"
        if self.mixed_precision not in MIXED_PRECISION:
            raise UserError(
                f"mixed_precision={self.mixed_precision!r} unknown; choices: {', '.join(MIXED_PRECISION)}"
            )
        if self.device not in DEVICES:
            raise UserError(f"device={self.device!r} unknown; choices: {', '.join(DEVICES)}")
        if self.resume not in (True, False, "auto"):
            raise UserError(f"resume={self.resume!r}: use true, false or auto")
        if self.resume is True and self.overwrite:
            raise UserError("resume=true and overwrite=true contradict each other: choose one")
        if self.epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise UserError("epochs and max_steps must be >= 1")
        if (
            not math.isfinite(self.temperature)
            or self.temperature <= 0
            or self.log_every < 1
            or self.val_every < 1
        ):
            raise UserError("temperature must be > 0, log_every and val_every >= 1")

    def on_cpu(self) -> bool:
        """Whether this run trains on the CPU (``cpu``, or ``auto`` without a GPU)."""
        import torch

        return self.device == "cpu" or (self.device == "auto" and not torch.cuda.is_available())

    @property
    def out_dir(self) -> str:
        """The old name of ``out`` (read-only, for code not yet moved to ``out``)."""
        return self.out
