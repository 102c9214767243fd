"""ShapesWorld's two configs: :class:`RenderConfig`, what ``tflocal shapes`` holds, and
:class:`ShapesConfig`, the generator's own settings (recorded in ``meta.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tflocal.errors import UserError
from tflocal.shapesworld.vocab import HELD_OUT_COLOR_SHAPE, HELD_OUT_RELATIONS


def split_counts(n: int, n_train: int | None, n_test: int | None) -> tuple[int, int, int]:
    """(train, test_id, test_ood) from --n / --n-train / --n-test."""
    n_test = n_test if n_test is not None else n // 10
    n_train = n_train if n_train is not None else n - 2 * n_test
    return n_train, n_test, n_test


WORLDS = ("2d", "3d")


@dataclass
class RenderConfig:
    out: str = ""
    """Output folder."""
    world: str = "2d"
    """2d: ShapesWorld (flat shapes on a grid); 3d: the 3D world (cubes, spheres, cylinders on a
    floor; test splits of minimal pairs, :mod:`tflocal.world3d`)."""
    n: int = 1000
    """Total images, split 80/10/10 (train/test_id/test_ood)."""
    n_train: int | None = None
    """Train images (overrides the split of n)."""
    n_test: int | None = None
    """Images in each of test_id and test_ood."""
    n_novel: int | None = None
    """test_novel images (test_ood's held-out combinations, every shape and attribute named with a
    word outside the shipped vocabulary), rendered in addition to n; default: as many as test_id."""
    seed: int = 0
    counterfactual: bool = False
    """Also render a counterfactual twin per train image (one SWAP negative made true)."""
    vary_names: float = 0.0
    """Share (0..1) of train images whose shapes, colours, sizes and textures are named with other
    words (synonyms, none of them a test_novel word), drawn per image."""
    image_size: int = 224
    workers: int = 2
    """Processes (output is identical for any number)."""
    train_pairs: float = 0.5
    """3d only: share of train items that also get a minimal-pair twin image (a negative image of
    the caption in training). In the 3d world --n-test counts minimal pairs (two images each)."""

    def __post_init__(self) -> None:
        if not self.out:
            raise UserError("shapes: missing 'out': give --out DIR")
        if self.world not in WORLDS:
            raise UserError(f"shapes: --world {self.world!r} unknown; choices: {', '.join(WORLDS)}")
        if self.world == "3d" and (self.counterfactual or self.vary_names):
            raise UserError("shapes: --counterfactual and --vary-names are ShapesWorld (--world 2d) options")
        if not 0.0 <= self.vary_names <= 1.0:
            raise UserError(
                f"shapes: --vary-names is a share of the train images, 0..1 (got {self.vary_names})"
            )
        if min(*self.counts, self.novel) < 0 or self.workers < 1:
            raise UserError(
                f"shapes: split sizes {(*self.counts, self.novel)} and --workers must not be negative"
            )

    @property
    def novel(self) -> int:
        """test_novel images."""
        return self.counts[1] if self.n_novel is None else self.n_novel

    @property
    def counts(self) -> tuple[int, int, int]:
        """(train, test_id, test_ood) images."""
        return split_counts(self.n, self.n_train, self.n_test)


@dataclass
class ShapesConfig:
    """Generator settings (recorded in ``meta.json``)."""

    seed: int = 0
    image_size: int = 224
    held_out_color_shape: list = field(default_factory=lambda: [list(p) for p in HELD_OUT_COLOR_SHAPE])
    held_out_relations: list = field(default_factory=lambda: [list(f) for f in HELD_OUT_RELATIONS])
    counterfactual: bool = False
    """Add a counterfactual twin per ``train`` image (see the module docstring)."""
    vary_names: float = 0.0
    """Share of ``train`` images named with other words (:data:`~tflocal.shapesworld.novel.TRAIN_NAMES`)."""
