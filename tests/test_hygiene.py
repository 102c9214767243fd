"""The tree speaks of the project only: no commit hashes, issue numbers or words about how the
work was organised in the README, docs, code, configs or tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACES = ["README.md", "docs", "tflocal", "cache_tools", "bench", "tests", "configs", "tools", "notebooks", ".ci"]
SUFFIXES = {".md", ".py", ".yaml", ".yml", ".sh", ".toml", ".ipynb", ".txt", ""}

COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,12}\b")
"""A short commit hash: 7-12 hex digits with a letter and a digit (a full sha256 is longer)."""
ISSUE = re.compile(r"\bissues? ?#?\d+|(?<![\w&/'\"])#\d{1,3}\b(?!['\"])", re.IGNORECASE)
SESSION = re.compile(r"\bsessions?\b", re.IGNORECASE)
PYTEST_SESSION = re.compile(
    r"scope=\"session\"|session-scoped|test session|\"session\.intra_op\.\w+\"", re.IGNORECASE
)
"""API names that hold the word: pytest's fixture scope, ONNX Runtime's config keys."""


def files():
    for place in PLACES:
        path = ROOT / place
        candidates = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for p in candidates:
            if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts:
                yield p


def offences(text: str) -> list[str]:
    """What in ``text`` speaks of commits, issues or sessions (one entry per hit)."""
    hits = [m.group(0) for m in COMMIT.finditer(text)] + [m.group(0) for m in ISSUE.finditer(text)]
    hits += [m.group(0) for m in SESSION.finditer(PYTEST_SESSION.sub("", text))]
    return hits


def test_the_checks_catch_what_they_should():
    assert offences("as of commit 13c885a the quickstart") == ["13c885a"]
    assert offences("the parser of issue 12 and #15") == ["issue 12", "#15"]
    assert offences("measured last session") == ["session"]
    assert offences('@pytest.fixture(scope="session")\ncolour "#123" and sha256 ' + "ab12" * 16) == []
    assert offences('add_session_config_entry("session.intra_op.allow_spinning", "0")') == []


def text_of(path: Path) -> str:
    """A file's text; for a notebook, its cells' sources (cell ids are random hex)."""
    text = path.read_text(errors="replace")
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell.get("source", [])) for cell in json.loads(text)["cells"])
    return text


def test_no_commit_issue_or_session_words():
    bad = []
    for path in files():
        if path == Path(__file__).resolve():
            continue
        for n, line in enumerate(text_of(path).splitlines(), 1):
            for hit in offences(line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {hit!r}")
    assert not bad, "\n".join(bad[:60])
