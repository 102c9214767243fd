"""open_clip adapter (OpenAI-style ``CLIP`` class with a ViT image tower).

Tokens are put in the joint space:

* image: the ViT with ``output_tokens=True`` returns ``(pooled, tokens)``; the tokens are
  ``ln_post``-ed but not projected, so patches = ``tokens @ visual.proj`` ([B, P, embed_dim]);
  the CLS token is not a patch and is dropped.
* text: token embedding + positions -> causal transformer -> ``ln_final`` -> ``@ text_projection``
  for every position; the global vector is the one at the pooling position (EOT = argmax of
  the ids for OpenAI-style tokenizers), exactly as ``model.encode_text`` computes it.

Global embeddings are exactly ``model.encode_image`` / ``model.encode_text`` (not normalized).
Name forms are described in :mod:`cache_tools.encoders`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

import torch

from cache_tools.encoders.base import Encoder, ImageOutput, TextOutput
from cache_tools.encoders.tokens import lengths_to_mask, split_real
from cache_tools.errors import UserError
from cache_tools.infra.precision import get_autocast


@dataclass
class OpenClipSpec:
    """What ``open_clip.create_model_and_transforms`` gets: ``model_name`` (a built-in config
    name or ``local-dir:``/``hf-hub:`` form), ``pretrained`` (tag, file, or None for the
    schema forms) and ``force_quick_gelu``."""

    model_name: str
    pretrained: str | None
    force_quick_gelu: bool = False


def resolve_spec(spec: str) -> OpenClipSpec:
    """Parse the part after ``openclip:`` (no model is built; raises UserError for unknown
    model names and tags, with the choices)."""
    import open_clip

    if spec.startswith(("local-dir:", "hf-hub:")):
        return OpenClipSpec(spec, None)
    if "@" not in spec and os.path.isdir(spec):
        return OpenClipSpec(f"local-dir:{spec}", None)
    model, sep, pretrained = spec.partition("@")
    known = open_clip.list_models()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=5)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise UserError(
            f"unknown open_clip model {model!r} in 'openclip:{spec}'.{hint} "
            "See open_clip.list_models() for all names, or give a model directory: openclip:/path/to/dir"
        )
    tags = open_clip.list_pretrained_tags_by_model(model)
    if not sep or not pretrained:
        raise UserError(
            f"'openclip:{spec}' says no weights: write openclip:{model}@TAG with TAG one of "
            f"{', '.join(tags) or '(none known)'}, or openclip:{model}@/path/to/checkpoint"
        )
    if os.path.isfile(pretrained):
        return OpenClipSpec(model, pretrained)
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        raise UserError(
            f"unknown pretrained tag {pretrained!r} for open_clip model {model!r} (and no such file): "
            f"tags for it are {', '.join(tags) or '(none)'}"
        )
    quick = bool(cfg.get("quick_gelu", False)) and not model.endswith("-quickgelu")
    return OpenClipSpec(model, pretrained, force_quick_gelu=quick)


def load(spec: str, device: torch.device, precision: str, name: str) -> OpenClipEncoder:
    """Build the model named by ``spec`` (see :func:`resolve_spec`) and wrap it."""
    import open_clip

    ocs = resolve_spec(spec)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            ocs.model_name, pretrained=ocs.pretrained, force_quick_gelu=ocs.force_quick_gelu
        )
        tokenizer = open_clip.get_tokenizer(ocs.model_name)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        raise UserError(f"could not load open_clip model 'openclip:{spec}': {e}") from e
    return OpenClipEncoder(model, preprocess, tokenizer, name=name, device=device, precision=precision)


class OpenClipEncoder(Encoder):
    """Wraps an open_clip ``CLIP`` with a ``VisionTransformer`` tower and a ``SimpleTokenizer``.
    Outputs are float32 CPU tensors."""

    def __init__(
        self,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        name: str,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
    ):
        from open_clip.model import CLIP
        from open_clip.tokenizer import SimpleTokenizer
        from open_clip.transformer import VisionTransformer

        visual = getattr(model, "visual", None)
        if not isinstance(model, CLIP) or not isinstance(visual, VisionTransformer):
            raise UserError(
                f"{name}: only open_clip models with an OpenAI-style text tower and a ViT image tower "
                f"are supported (got {type(model).__name__} with {type(visual).__name__}); "
                "for SigLIP use the transformers checkpoint (hf:google/siglip-...)"
            )
        if visual.attn_pool is not None:
            raise UserError(f"{name}: ViT towers with an attentional pooler (CoCa) are not supported")
        if not isinstance(tokenizer, SimpleTokenizer):
            raise UserError(
                f"{name}: only open_clip's SimpleTokenizer is supported (got {type(tokenizer).__name__})"
            )
        self.model = model.eval().requires_grad_(False)
        self._preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.precision = precision
        self.space = "joint"
        self.global_space = "joint"
        embed_dim = int(visual.output_dim)
        self.image_dim = embed_dim if visual.proj is not None else int(visual.conv1.out_channels)
        tp = model.text_projection
        self.text_dim = int(tp.out_features if isinstance(tp, torch.nn.Linear) else tp.shape[1])
        self.global_image_dim = embed_dim
        self.global_text_dim = self.text_dim
        self.grid = tuple(int(g) for g in visual.grid_size)
        self.image_size = tuple(int(s) for s in visual.image_size)
        self.context_length = int(model.context_length)
        self.device = torch.device("cpu")
        self.to(device)

    def to(self, device: str | torch.device) -> OpenClipEncoder:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL image -> [3, H, W]: open_clip's own eval transform for this model."""
        return self._preprocess(image)

    def preprocess_description(self) -> str:
        return repr(self._preprocess)

    def encode_images(self, pixels: torch.Tensor) -> ImageOutput:
        """pixels [B, 3, H, W] -> patches [B, P, D] (= ln_post(tokens) @ proj), global_ [B, D]
        (= model.encode_image)."""
        visual = self.model.visual
        previous = visual.output_tokens
        visual.output_tokens = True
        try:
            with torch.inference_mode(), get_autocast(self.precision, self.device):
                pooled, tokens = visual(pixels.to(self.device))
                if visual.final_ln_after_pool:  # tokens come out without ln_post in that variant
                    tokens = visual.ln_post(tokens)
                if visual.proj is not None:
                    tokens = tokens @ visual.proj
        finally:
            visual.output_tokens = previous
        assert tokens.shape[1] == self.grid[0] * self.grid[1], (tokens.shape, self.grid)
        return ImageOutput(patches=tokens.float().cpu(), global_=pooled.float().cpu())

    def _token_ids(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
        """-> ids [B, L], lengths [B] (SOT..EOT inclusive), truncated flags."""
        tok = self.tokenizer
        ids = tok(texts, context_length=self.context_length)
        # the first EOT ends the real tokens (id 0 is a real BPE piece, '!', so no pad test)
        is_eot = ids == tok.eot_token_id
        lengths = is_eot.int().argmax(dim=1) + 1
        truncated = [len(tok.encode(t)) + 2 > self.context_length for t in texts]
        return ids, lengths, truncated

    def _piece(self, token_id: int) -> str:
        tok = self.tokenizer
        piece = tok.decoder[token_id]
        if token_id in tok.all_special_ids:
            return piece
        text = bytearray(tok.byte_decoder[c] for c in piece).decode("utf-8", errors="replace")
        return text.replace("</w>", "") or text

    def encode_texts(self, texts: list[str]) -> TextOutput:
        """B strings -> tokens B x [T_i, D] (every real position projected to the joint space),
        global_ [B, D] (= model.encode_text, the projected pooling position)."""
        from open_clip.transformer import text_global_pool

        m = self.model
        ids, lengths, truncated = self._token_ids(list(texts))
        ids_dev = ids.to(self.device)
        with torch.inference_mode(), get_autocast(self.precision, self.device):
            cast_dtype = m.transformer.get_cast_dtype()
            x = m.token_embedding(ids_dev).to(cast_dtype) + m.positional_embedding.to(cast_dtype)
            x = m.transformer(x, attn_mask=m.attn_mask)
            x = m.ln_final(x)
            pooled = text_global_pool(
                x, ids_dev, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None)
            )
            proj = m.text_projection
            if proj is not None:
                project = proj if isinstance(proj, torch.nn.Linear) else (lambda h: h @ proj)
                x, pooled = project(x), project(pooled)
        mask = lengths_to_mask(lengths, ids.shape[1])
        token_strings = [[self._piece(int(t)) for t in ids[i, : lengths[i]]] for i in range(len(texts))]
        return TextOutput(
            tokens=split_real(x, mask),
            token_strings=token_strings,
            global_=pooled.float().cpu(),
            truncated=truncated,
        )
