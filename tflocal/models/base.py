"""The interface every alignment head declares: :class:`Head`.

A head is an ``nn.Module`` mapping a :class:`~tflocal.pairs.batch.PairBatch` of B (image,
caption) pairs to scores [B]. What its callers need to know about it (scorers, the training
loop, the late-interaction index, the serve engine) is declared on the class, with a default
where one exists, so callers read attributes and call methods instead of probing for them:

* ``needs`` (required): the PairBatch fields its ``forward`` reads; batches are built with only
  those.
* ``accepts_pair_image``: whether it takes ``PairBatch.pair_image`` (U distinct images [U, P, D]
  and a pair -> image index [B]) and runs its image side once per distinct image.
* ``separable``: whether an index stores its image side, computed from the image alone (the
  late-interaction towers of :mod:`tflocal.retrieval.head_sides`, or a separable global head's
  ``encode_image_global`` as a read-out's global path). A head whose image side reads the
  caption (a joint cross-encoder) is not.
* ``max_text``: the longest caption (tokens) its text positions hold; None: no limit.
* ``word_maps``: whether it draws word -> region maps of its own (``word_region_attention``).
* :meth:`mix_weights`: the learned weights of its score's terms, logged during training ({}:
  none).
* :meth:`auxiliary_scores`: scores [B] of the last training forward that get a loss of their
  own ({}: none).
* :meth:`global_path_head`: the global head inside its global path (None: no global path).

Why a base class and not a ``typing.Protocol``: every head is an ``nn.Module`` already, the
defaults above are shared code (a Protocol holds no defaults a class inherits), and a base class
can refuse, when a head class is defined, a head that forgets to declare ``needs`` or declares a
field PairBatch lacks (``__init_subclass__``), and refuse instantiating one without ``forward``
(``abc``). ``isinstance(x, Head)`` then tells a head from any other module.

Nothing here is a parameter, buffer or submodule: a head's ``state_dict`` (what checkpoints and
index fingerprints hold) is the same with or without this base.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from tflocal.pairs.batch import PAIR_FIELDS, PairBatch


class Head(nn.Module, metaclass=ABCMeta):
    """Base class of the alignment heads: ``forward(PairBatch of B) -> scores [B]`` (float32).

    Subclasses declare ``needs`` as a class attribute (a tuple of PairBatch field names; an
    instance may narrow or extend it in ``__init__``, e.g. with the global embeddings of a
    global path) and override the other declarations where they differ from the defaults.
    """

    needs: tuple[str, ...]
    """PairBatch fields ``forward`` reads (required; a subclass without it is refused)."""
    accepts_pair_image: bool = False
    """Takes ``PairBatch.pair_image`` [B] with patches of U distinct images [U, P, D_img]."""
    separable: bool = False
    """Its image side depends on the image alone and an index stores it (see the module docstring)."""
    max_text: int | None = None
    """Longest caption (tokens) its text positions hold; None: any length."""
    word_maps: bool = False
    """Draws word -> region maps of its own: overrides :meth:`word_region_attention`."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        try:
            needs = cls.needs
        except AttributeError:
            raise TypeError(
                f"head {cls.__name__} declares no `needs`: the PairBatch fields its forward reads"
            ) from None
        if not isinstance(needs, tuple) or not all(isinstance(n, str) for n in needs):
            raise TypeError(
                f"head {cls.__name__}: `needs` must be a tuple of PairBatch field names, got {needs!r}"
            )
        unknown = [n for n in needs if n not in PAIR_FIELDS]
        if unknown:
            raise TypeError(
                f"head {cls.__name__}: `needs` names {unknown}, not PairBatch fields ({', '.join(PAIR_FIELDS)})"
            )
        draws = cls.word_region_attention is not Head.word_region_attention
        if draws != bool(cls.word_maps):
            raise TypeError(
                f"head {cls.__name__}: word_maps={cls.word_maps} but it "
                f"{'overrides' if draws else 'does not override'} word_region_attention"
            )

    @abstractmethod
    def forward(self, batch: PairBatch) -> torch.Tensor:
        """PairBatch of B pairs (the fields in ``needs``) -> scores [B] float32."""

    def mix_weights(self) -> dict[str, float]:
        """The learned weights of the score's terms, by name (``mix/...``): logged during
        training. {} for a head whose score has no learned mix."""
        return {}

    def auxiliary_scores(self) -> dict[str, torch.Tensor]:
        """Scores [B] of the last training-mode forward that get a loss of their own (e.g. a
        global path's {'global': g}), then forgotten; {} when there are none."""
        return {}

    def auxiliary_losses(self, positive: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scalar losses of the last training-mode forward besides the candidate sets' (e.g. a
        count regression on the true pairs), then forgotten; ``positive`` [B] bool marks the
        forward's true pairs. {} when there are none."""
        return {}

    def global_path_head(self) -> Head | None:
        """The global head inside this head's global path (:mod:`tflocal.models.global_path`);
        None for a head without one."""
        return None

    def word_region_attention(self, batch: PairBatch) -> torch.Tensor:
        """[B, T, P]: how much each caption token attends to each patch (rows of padded tokens
        are 0). Only heads with ``word_maps`` draw them."""
        raise NotImplementedError(f"head {type(self).__name__} draws no word -> region maps of its own")
