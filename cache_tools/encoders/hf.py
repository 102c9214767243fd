"""transformers adapters: ``hf:ID_OR_DIR`` dispatched on the checkpoint's ``model_type``.

* ``clip`` (:class:`HFClipEncoder`): vision ``last_hidden_state`` is not post-layernormed, so
  patches = ``visual_projection(post_layernorm(h[:, 1:]))`` (CLS dropped) — joint space; text
  ``last_hidden_state`` is already ``final_layer_norm``-ed, so tokens = ``text_projection(h)``;
  the global text vector is the projected EOS token.
* ``siglip`` (:class:`HFSiglipEncoder`, also fixed-resolution SigLIP 2 checkpoints, whose
  ``model_type`` is ``siglip``): attention-pooled image head, no CLS and no projection for the
  patch tokens, so patches are the post-layernormed vision tokens and caption tokens the
  final-layernormed text tokens — ``hidden`` space. Captions are padded to ``max_length`` and
  the model gets ``input_ids`` only, as SigLIP was trained (its global text vector is the head
  applied to the last position, padding included); the real tokens returned are those the
  tokenizer's attention mask marks (the caption's pieces and its ``</s>``).

Globals are exactly ``model.get_image_features`` / ``get_text_features`` (their pooled output).
"""

from __future__ import annotations

import json
from typing import Any

import torch

from cache_tools.encoders.base import Encoder, ImageOutput, TextOutput
from cache_tools.encoders.tokens import clean_piece, split_real
from cache_tools.errors import UserError
from cache_tools.infra.precision import get_autocast


def load(spec: str, device: torch.device, precision: str, name: str) -> HFEncoder:
    """Read the config of ``spec`` (hub id or local dir), pick the adapter for its model_type,
    load model + tokenizer + image processor."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise UserError(
            f"could not read the transformers config of {name!r}: {e}. Give a local directory saved with "
            "save_pretrained, or a hub id that is already in the HF cache (downloads may be off)"
        ) from e
    model_type = getattr(config, "model_type", "")
    if model_type not in HF_ADAPTERS:
        raise UserError(
            f"{name!r} is a {model_type!r} checkpoint; the hf: prefix supports model types "
            f"{', '.join(sorted(HF_ADAPTERS))} (SigLIP 2 NaFlex 'siglip2' checkpoints are not supported: "
            "use a fixed-resolution one such as google/siglip2-base-patch16-224)"
        )
    from transformers import AutoImageProcessor, AutoTokenizer

    cls = HF_ADAPTERS[model_type]
    try:
        model = cls.model_class().from_pretrained(spec, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(spec)
        image_processor = AutoImageProcessor.from_pretrained(spec)
    except (OSError, ValueError, ImportError) as e:
        raise UserError(f"could not load {name!r} (model, tokenizer and image processor): {e}") from e
    return cls(model, tokenizer, image_processor, name=name, device=device, precision=precision)


class HFEncoder(Encoder):
    """Shared parts of the transformers adapters: image processor, tokenization, device.
    Outputs are float32 CPU tensors."""

    padding: str = "longest"
    """How captions are padded: ``"longest"`` or ``"max_length"`` (to ``context_length``)."""
    pass_attention_mask: bool = True
    """Whether the text model gets the attention mask."""

    @staticmethod
    def model_class() -> Any:
        raise NotImplementedError

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        image_processor: Any,
        name: str,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
    ):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.precision = precision
        vcfg, tcfg = model.config.vision_config, model.config.text_config
        size = int(vcfg.image_size)
        self.image_size = (size, size)
        self.grid = (size // int(vcfg.patch_size), size // int(vcfg.patch_size))
        self.context_length = int(tcfg.max_position_embeddings)
        self.global_space = "joint"
        self.device = torch.device("cpu")
        self.to(device)

    def to(self, device: str | torch.device) -> HFEncoder:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL image -> [3, H, W]: the checkpoint's own image processor."""
        return self.image_processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    def preprocess_description(self) -> str:
        cfg = self.image_processor.to_dict()
        return f"{type(self.image_processor).__name__} " + json.dumps(cfg, sort_keys=True, default=str)

    def metadata(self) -> dict[str, Any]:
        """The base metadata plus ``patch_geometry`` read from the image processor: CLIP resizes
        the shorter side and center-crops, SigLIP resizes to a square (see cache_tools.encoders.geometry)."""
        meta = super().metadata()
        cfg = self.image_processor.to_dict()
        size, crop = cfg.get("size") or {}, cfg.get("crop_size") or {}
        if cfg.get("do_center_crop") and "shortest_edge" in size and "height" in crop:
            meta["patch_geometry"] = {
                "mode": "center_crop",
                "resize": int(size["shortest_edge"]),
                "crop": int(crop["height"]),
            }
        elif cfg.get("do_resize", True) and not cfg.get("do_center_crop") and "height" in size:
            meta["patch_geometry"] = {"mode": "stretch", "crop": int(size["height"])}
        return meta

    def tokenize(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[bool]]:
        """-> (model inputs {input_ids [B, L](, attention_mask)}, real-token mask [B, L], truncated)."""
        enc = self.tokenizer(
            list(texts),
            padding=self.padding,
            truncation=True,
            max_length=self.context_length,
            return_attention_mask=True,
            return_tensors="pt",
        )
        full = self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
        truncated = [len(ids) > self.context_length for ids in full]
        inputs = {"input_ids": enc["input_ids"]}
        if self.pass_attention_mask:
            inputs["attention_mask"] = enc["attention_mask"]
        return inputs, enc["attention_mask"].bool(), truncated

    def token_strings(self, ids: torch.Tensor, mask: torch.Tensor) -> list[list[str]]:
        return [
            [clean_piece(p) for p in self.tokenizer.convert_ids_to_tokens(ids[i][mask[i]].tolist())]
            for i in range(ids.shape[0])
        ]

    def text_states(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (token states [B, L, D_txt] in this adapter's space, global [B, D_gt])."""
        raise NotImplementedError

    def encode_texts(self, texts: list[str]) -> TextOutput:
        """B strings -> real tokens B x [T_i, D_txt], global_ [B, D_gt] (= get_text_features)."""
        inputs, mask, truncated = self.tokenize(texts)
        with torch.inference_mode(), get_autocast(self.precision, self.device):
            states, global_ = self.text_states({k: v.to(self.device) for k, v in inputs.items()})
        return TextOutput(
            tokens=split_real(states, mask),
            token_strings=self.token_strings(inputs["input_ids"], mask),
            global_=global_.float().cpu(),
            truncated=truncated,
        )


class HFClipEncoder(HFEncoder):
    """transformers ``CLIPModel``: tokens and patches in the joint (projected) space."""

    padding = "longest"  # causal text tower: padding after EOS changes nothing before it
    pass_attention_mask = True

    @staticmethod
    def model_class() -> Any:
        from transformers import CLIPModel

        return CLIPModel

    def __init__(self, model: Any, *args: Any, **kwargs: Any):
        super().__init__(model, *args, **kwargs)
        self.space = "joint"
        self.image_dim = self.text_dim = int(model.config.projection_dim)
        self.global_image_dim = self.global_text_dim = int(model.config.projection_dim)

    def encode_images(self, pixels: torch.Tensor) -> ImageOutput:
        """pixels [B, 3, H, W] -> patches [B, P, D] = visual_projection(post_layernorm(h[:, 1:])),
        global_ [B, D] = visual_projection(post_layernorm(h[:, 0])) (= get_image_features)."""
        m = self.model
        with torch.inference_mode(), get_autocast(self.precision, self.device):
            out = m.vision_model(pixel_values=pixels.to(self.device))
            global_ = m.visual_projection(out.pooler_output)
            patches = m.visual_projection(m.vision_model.post_layernorm(out.last_hidden_state[:, 1:]))
        return ImageOutput(patches=patches.float().cpu(), global_=global_.float().cpu())

    def text_states(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        out = m.text_model(**inputs)
        return m.text_projection(out.last_hidden_state), m.text_projection(out.pooler_output)


class HFSiglipEncoder(HFEncoder):
    """transformers ``SiglipModel``: tokens and patches in the towers' hidden spaces."""

    padding = "max_length"
    pass_attention_mask = False

    @staticmethod
    def model_class() -> Any:
        from transformers import SiglipModel

        return SiglipModel

    def __init__(self, model: Any, *args: Any, **kwargs: Any):
        super().__init__(model, *args, **kwargs)
        vcfg, tcfg = model.config.vision_config, model.config.text_config
        self.space = "hidden"
        self.image_dim = self.global_image_dim = int(vcfg.hidden_size)
        self.text_dim = int(tcfg.hidden_size)
        self.global_text_dim = int(getattr(tcfg, "projection_size", None) or tcfg.hidden_size)

    def encode_images(self, pixels: torch.Tensor) -> ImageOutput:
        """pixels [B, 3, H, W] -> patches [B, P, D_v] (post-layernormed, no CLS exists),
        global_ [B, D_v] = attention-pool head output (= get_image_features)."""
        with torch.inference_mode(), get_autocast(self.precision, self.device):
            out = self.model.vision_model(pixel_values=pixels.to(self.device))
        return ImageOutput(
            patches=out.last_hidden_state.float().cpu(), global_=out.pooler_output.float().cpu()
        )

    def text_states(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.text_model(**inputs)
        return out.last_hidden_state, out.pooler_output


HF_ADAPTERS: dict[str, type[HFEncoder]] = {"clip": HFClipEncoder, "siglip": HFSiglipEncoder}
"""config.model_type -> adapter class."""
