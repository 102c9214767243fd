"""Tiny random-weight encoders saved to disk, loadable by registry name (no download).

Each ``make_tiny_*(directory)`` writes a model directory under ``directory`` in about a second
and returns the registry name that loads it with ``cache_tools.encoders.load_encoder``:

* ``make_tiny_openclip(dir)`` -> ``"openclip:DIR/tiny_openclip"``: an open_clip ``CLIP``, ViT
  image tower 32x32 px, patch 8 (grid 4x4, width 32), text width 24, joint dim 16, context 16,
  the real CLIP BPE tokenizer (``open_clip_config.json`` + ``open_clip_model.safetensors``).
* ``make_tiny_hf_clip(dir)`` -> ``"hf:DIR/tiny_hf_clip"``: a transformers ``CLIPModel`` of the
  same sizes with the real CLIP BPE vocabulary (``CLIPTokenizer``, pad = eos as in openai/clip-*)
  and a ``CLIPImageProcessor`` at 32 px.
* ``make_tiny_hf_siglip(dir)`` -> ``"hf:DIR/tiny_hf_siglip"``: a transformers ``SiglipModel``
  (vision width 32, text width 24, projection 24, 32 px, patch 8, context 16) with a
  word-level tokenizer shaped like SigLIP's (no BOS, ``</s>`` as both EOS and pad).

Weights come from a fixed seed, so two calls write identical models.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_OPENCLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 2},
}
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]

SIGLIP_WORDS = (
    "a an the of and on in to with left right above below near next behind front is are "
    "red green blue yellow purple orange white black gray big small large tiny "
    "cube ball sphere cylinder cone square circle triangle shape object "
    "cat dog man woman person photo picture table chair car tree sky grass street "
    "sitting standing holding riding two three one . , !"
).split()


def make_tiny_openclip(directory: str | Path, seed: int = 0) -> str:
    """Write an open_clip model directory; return ``"openclip:<dir>"``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    out = Path(directory) / "tiny_openclip"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_OPENCLIP_CFG)
    config = {
        "model_cfg": TINY_OPENCLIP_CFG,
        "preprocess_cfg": {"size": 32, "mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic"},
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=1))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    return f"openclip:{out}"


def clip_bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP BPE vocabulary and merges from open_clip's bundled file, with HF's names for the
    special tokens (``<|startoftext|>`` 49406, ``<|endoftext|>`` 49407)."""
    import gzip

    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    vocab = dict(SimpleTokenizer().encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    return vocab, merges


def make_tiny_hf_clip(directory: str | Path, seed: int = 0) -> str:
    """Write a transformers CLIP directory (model, tokenizer, image processor); return ``"hf:<dir>"``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    out = Path(directory) / "tiny_hf_clip"
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_bpe_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)
    text_cfg = dict(
        vocab_size=len(vocab),
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_cfg = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=16))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
    ).save_pretrained(out)
    return f"hf:{out}"


def make_siglip_like_tokenizer(max_length: int = 16):
    """A word-level fast tokenizer shaped like SigLIP's: lowercase, no BOS, ``</s>`` appended
    and used for padding (pad id == eos id == 1), ``<unk>`` for unknown words."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in SIGLIP_WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


def make_tiny_hf_siglip(directory: str | Path, seed: int = 0) -> str:
    """Write a transformers SigLIP directory (model, tokenizer, image processor); return ``"hf:<dir>"``."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    out = Path(directory) / "tiny_hf_siglip"
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = make_siglip_like_tokenizer(16)
    text_cfg = dict(
        vocab_size=len(tokenizer),
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_size=24,
        bos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision_cfg = dict(
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text_cfg, vision_config=vision_cfg))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return f"hf:{out}"
