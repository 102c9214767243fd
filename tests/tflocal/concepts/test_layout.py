"""Caption layouts: token pieces aligned to characters, parser spans turned into token masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tflocal.concepts.layout import caption_layout, caption_layout_counts, layout_tensors, token_char_spans

WORDPIECE = ["[CLS]", "a", "small", "red", "he", "##xa", "##gon", "is", "left", "of", "a", "blue", "square", ".", "[SEP]"]  # fmt: skip
TEXT = "A small red hexagon is left of a blue square."


def test_wordpiece_pieces_map_to_their_characters():
    spans = token_char_spans(TEXT, WORDPIECE)
    assert spans[0] is None and spans[-1] is None  # [CLS], [SEP]
    assert [TEXT[s:e] for s, e in spans[1:-1]] == ["A", "small", "red", "he", "xa", "gon", "is", "left", "of", "a", "blue", "square", "."]  # fmt: skip


@pytest.mark.parametrize(
    "pieces",
    [
        [
            "<start_of_text>",
            "a",
            "red",
            "circle",
            "above",
            "a",
            "star",
            "<end_of_text>",
        ],  # CLIP BPE (cleaned)
        ["<s>", "a", "Ġred", "Ġcircle", "Ġabove", "Ġa", "Ġstar", "</s>"],  # byte-level BPE
        ["▁a", "▁red", "▁circle", "▁above", "▁a", "▁star", "</s>"],  # SentencePiece
    ],
)
def test_other_tokenizer_conventions(pieces):
    text = "a red circle above a star"
    words = [text[s:e] for s, e in filter(None, token_char_spans(text, pieces))]
    assert words == text.split()


def test_unknown_piece_is_skipped_without_losing_the_rest():
    spans = token_char_spans("a red circle", ["[CLS]", "a", "[UNK]", "circle", "[SEP]"])
    assert spans == [None, (0, 1), None, (6, 12), None]
    spans = token_char_spans("a red circle", ["a", "zzz", "red", "circle"])  # a piece not in the text
    assert spans == [(0, 1), None, (2, 5), (6, 12)]


def test_objects_and_relation_become_token_masks():
    obj, rel_tok, rel = caption_layout(TEXT, WORDPIECE, max_objects=3, max_relations=2)
    assert obj.shape == (3, len(WORDPIECE)) and rel_tok.shape == (2, len(WORDPIECE)) and rel.shape == (2, 2)
    pieces = np.array(WORDPIECE)
    assert pieces[obj[0]].tolist() == ["a", "small", "red", "he", "##xa", "##gon"]
    assert pieces[obj[1]].tolist() == ["a", "blue", "square"]
    assert not obj[2].any()
    assert pieces[rel_tok[0]].tolist() == ["left", "of"] and rel[0].tolist() == [0, 1]
    assert not rel_tok[1].any() and rel[1].tolist() == [-1, -1]


def test_swapped_caption_moves_the_attribute_between_objects():
    swapped = "A small blue hexagon is left of a red square."
    pieces = ["[CLS]", "a", "small", "blue", "he", "##xa", "##gon", "is", "left", "of", "a", "red", "square", ".", "[SEP]"]  # fmt: skip
    obj, _, _ = caption_layout(swapped, pieces)
    assert np.array(pieces)[obj[0]].tolist() == ["a", "small", "blue", "he", "##xa", "##gon"]
    assert np.array(pieces)[obj[1]].tolist() == ["a", "red", "square"]


def test_predicative_attribute_joins_its_object():
    text = "the towels are white"
    obj, _, _ = caption_layout(text, ["[CLS]", "the", "towels", "are", "white", "[SEP]"])
    assert obj[0].tolist() == [False, True, True, False, True, False]


def test_caption_without_objects_has_an_empty_layout():
    obj, rel_tok, rel = caption_layout("zzz qqq", ["[CLS]", "zzz", "qqq", "[SEP]"])
    assert not obj.any() and not rel_tok.any() and (rel == -1).all()


def test_too_many_objects_drop_relations_that_touch_them():
    text = "a circle left of a square left of a star"
    pieces = ["a", "circle", "left", "of", "a", "square", "left", "of", "a", "star"]
    obj, rel_tok, rel = caption_layout(text, pieces, max_objects=2, max_relations=4)
    assert obj.any(1).tolist() == [True, True]
    assert rel[:, 0].tolist() == [0, -1, -1, -1] and rel[0].tolist() == [0, 1]


def test_layout_tensors_pad_and_cut():
    out = layout_tensors([TEXT, "zzz"], [WORDPIECE, ["zzz"]], n_tokens=8)
    assert out["segments"].shape == (2, 4, 8) and out["relation_tokens"].shape == (2, 4, 8)
    assert out["relations"].shape == (2, 4, 2)
    assert out["segments"][0, 0].tolist() == [False, True, True, True, True, True, True, False]
    assert out["segments"][0, 1].sum() == 0  # "a blue square" lies past token 8
    assert not out["segments"][1].any()
    with pytest.raises(ValueError, match="2 captions but 1"):
        layout_tensors([TEXT, "x"], [WORDPIECE], n_tokens=4)


def test_counts_are_the_numbers_the_phrases_state():
    texts = [
        "two small metal spheres left of three cubes",
        "a pair of red cubes",
        "both cubes are red",
        "a red cube left of the sphere",
        "cubes",
        "zzz",
    ]
    out = layout_tensors(texts, [t.split() for t in texts])
    assert out["counts"].dtype == torch.long and out["counts"].shape == (6, 4)
    assert out["counts"].tolist() == [
        [2, 3, 0, 0],
        [2, 0, 0, 0],
        [2, 0, 0, 0],
        [1, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]
    # the counts come from the same parse as the masks, which stay what caption_layout gives
    for i, t in enumerate(texts):
        obj, rel_tok, rel = caption_layout(t, t.split())
        assert np.array_equal(out["segments"][i, :, : obj.shape[1]].numpy(), obj)
        assert not out["segments"][i, :, obj.shape[1] :].any()
        assert np.array_equal(out["relations"][i].numpy(), rel)
    counts = caption_layout_counts(texts[0], texts[0].split(), max_objects=1)[3]
    assert counts.tolist() == [2]  # objects past max_objects have no count
