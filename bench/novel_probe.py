"""How much can a head read from a frozen text tower about a word it never saw in training?

ShapesWorld's ``test_novel`` names every colour and shape with a word outside the training
captions ("cobalt" for blue, "wedge" for triangle). A head on frozen token states can bind such a
word to the right region only as far as the text tower's state for "cobalt" tells *which colour*
it is. This bench measures that ceiling directly, without any head:

- a linear probe (logistic regression) on the tower's contextual token states of the closed
  ShapesWorld words, in several caption templates, predicting the concept (8 colours, 6 shapes),
  tested on the ``test_novel`` words in the same templates;
- the same probe trained on the closed words plus the ``--vary-names`` training synonyms
  (:data:`tflocal.shapesworld.novel.TRAIN_NAMES`), as the quickstart's heads see them;
- nearest neighbour by cosine (a novel word's state against the closed words' states);
- nearest neighbour by the pooled (sentence) embedding of the whole caption, as a phrase
  encoded on its own would be read.

Chance is 1/8 for colours and 1/6 for shapes. A word made of several word pieces is the mean of
its pieces' states. The last line is a JSON object of the figures.

    python bench/novel_probe.py                               # the quickstart's text tower
    python bench/novel_probe.py --encoder towers:effnet-lite0+minilm
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache_tools.encoders import load_encoder  # noqa: E402
from cache_tools.write.encode import encode_texts  # noqa: E402
from tflocal.shapesworld.novel import NOVEL_NAMES, TRAIN_NAMES  # noqa: E402
from tflocal.shapesworld.vocab import COLORS, SHAPES  # noqa: E402

TEMPLATES = {
    "colour": [
        "a small {w} square",
        "a large {w} circle",
        "a {w} star left of a triangle",
        "there is a {w} striped hexagon",
    ],
    "shape": [
        "a small red {w}",
        "a large blue {w}",
        "a {w} above a green star",
        "there is a dotted yellow {w}",
    ],
}
"""Caption templates per probe: the word in the positions ShapesWorld captions put it."""


def word_state(text: str, tokens: np.ndarray, token_strings: list[str], word: str) -> np.ndarray:
    """The mean state [D] of the token pieces that make up ``word`` in ``text`` (``tokens``
    [T, D]), found by joining pieces (``##`` continuations) left to right."""
    pieces = [p.replace("##", "").replace("Ġ", "").replace("▁", "").lower() for p in token_strings]
    for i in range(len(pieces)):
        acc = ""
        for j in range(i, len(pieces)):
            acc += pieces[j]
            if acc == word:
                return tokens[i : j + 1].mean(0)
            if not word.startswith(acc) or not acc:
                break
    raise ValueError(f"{word!r} not found in the tokens of {text!r}: {token_strings}")


def states(encoder, words_by_concept: dict[str, list[str]], templates: list[str]):
    """(X [N, D], y [N]) over every word of every concept in every template."""
    texts, keys = [], []
    for ci, (_, words) in enumerate(words_by_concept.items()):
        for w in words:
            for t in templates:
                texts.append(t.format(w=w))
                keys.append((ci, w))
    enc = encode_texts(encoder, texts)
    X = np.stack(
        [
            word_state(text, tok.astype(np.float32), ts, w)
            for text, tok, ts, (_, w) in zip(texts, enc.tokens, enc.token_strings, keys)
        ]
    )
    return X, np.array([ci for ci, _ in keys])


def probe(encoder, concepts: list[str], kind: str, with_synonyms: bool) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    tmpl = TEMPLATES[kind]
    train = {c: [c, *(TRAIN_NAMES[c] if with_synonyms else [])] for c in concepts}
    X, y = states(encoder, train, tmpl)
    Xt, yt = states(encoder, {c: [NOVEL_NAMES[c]] for c in concepts}, tmpl)
    scaler = StandardScaler().fit(X)
    clf = LogisticRegression(max_iter=5000, C=1.0).fit(scaler.transform(X), y)
    return float((clf.predict(scaler.transform(Xt)) == yt).mean())


def nearest(encoder, concepts: list[str], kind: str) -> float:
    tmpl = TEMPLATES[kind]
    X, y = states(encoder, {c: [c] for c in concepts}, tmpl)
    Xt, yt = states(encoder, {c: [NOVEL_NAMES[c]] for c in concepts}, tmpl)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Xt /= np.linalg.norm(Xt, axis=1, keepdims=True)
    return float((y[(Xt @ X.T).argmax(1)] == yt).mean())


def nearest_pooled(encoder, concepts: list[str], kind: str, with_synonyms: bool = False) -> float:
    """The same nearest-neighbour test on the tower's pooled embedding of each whole caption
    (its sentence embedding: for MiniLM, trained for sentence similarity), as a phrase encoded on
    its own would be: each test_novel caption against the closed (+ synonym) captions of the
    same template."""
    hits, n = 0, 0
    for tmpl in TEMPLATES[kind]:
        words = {c: [c, *(TRAIN_NAMES[c] if with_synonyms else [])] for c in concepts}
        labels = [c for c in concepts for _ in words[c]]
        R = encode_texts(encoder, [tmpl.format(w=w) for c in concepts for w in words[c]]).global_
        Q = encode_texts(encoder, [tmpl.format(w=NOVEL_NAMES[c]) for c in concepts]).global_
        R = R / np.linalg.norm(R, axis=1, keepdims=True)
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        best = (Q @ R.T).argmax(1)
        hits += sum(labels[b] == c for b, c in zip(best, concepts))
        n += len(concepts)
    return hits / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default="towers:effnet-lite0+minilm@text-bf16")
    args = ap.parse_args()
    encoder = load_encoder(args.encoder)
    concepts = {"colour": list(COLORS), "shape": list(SHAPES)}
    out: dict[str, object] = {"encoder": args.encoder, "chance": {"colour": 1 / 8, "shape": 1 / 6}}
    for kind, cs in concepts.items():
        out[kind] = {
            "probe_closed_words": round(probe(encoder, cs, kind, False), 3),
            "probe_with_train_synonyms": round(probe(encoder, cs, kind, True), 3),
            "nearest_closed_word": round(nearest(encoder, cs, kind), 3),
            "nearest_pooled_caption": round(nearest_pooled(encoder, cs, kind), 3),
            "nearest_pooled_caption_with_synonyms": round(nearest_pooled(encoder, cs, kind, True), 3),
        }
        print(
            f"{kind:6s} test_novel word -> concept: linear probe on closed words {out[kind]['probe_closed_words']:.2f}, "
            f"with the training synonyms {out[kind]['probe_with_train_synonyms']:.2f}, "
            f"nearest closed word {out[kind]['nearest_closed_word']:.2f}, nearest caption by pooled embedding "
            f"{out[kind]['nearest_pooled_caption']:.2f} (with synonyms {out[kind]['nearest_pooled_caption_with_synonyms']:.2f}) "
            f"(chance {out['chance'][kind]:.2f})"
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
