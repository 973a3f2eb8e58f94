"""The documents hold together: every relative link and anchor resolves (GitHub's anchor rules), and no
project history (issue numbers, work markers) leaks into them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "chart" / "README.md", *(ROOT / "docs").glob("*.md")]
)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
PROCESS_WORDS = [
    re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    re.compile(r"\(issue\b", re.IGNORECASE),
    re.compile(r"BEGIN\b[^\n]*\(issue", re.IGNORECASE),
]


def prose(text: str) -> str:
    """``text`` without fenced code blocks (links in them are code, not links) and inline code spans."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (not - or _), spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in re.sub(r"^(```|~~~).*?^\1", "", path.read_text(), flags=re.MULTILINE | re.DOTALL).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            seen = counts.get(base, 0)
            counts[base] = seen + 1
            found.add(base if seen == 0 else f"{base}-{seen}")
    return found


def test_slugs_follow_githubs_rules() -> None:
    assert slug("`docker run` against a dev PostgreSQL") == "docker-run-against-a-dev-postgresql"
    assert slug("Coming from Temporal's Helm chart") == "coming-from-temporals-helm-chart"
    assert slug("The `wait` snippet") == "the-wait-snippet"
    assert slug("States and decisions") == "states-and-decisions"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in LINK.findall(prose(document.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue  # an absolute URL
        path_part, _, anchor = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert broken == []


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## One part\n")
    text = "[ok](a.md#one-part) [bad](a.md#two) [gone](b.md) `[code](c.md)`"
    targets = LINK.findall(prose(text))
    assert targets == ["a.md#one-part", "a.md#two", "b.md"]
    assert "one-part" in anchors(tmp_path / "a.md")
    assert "two" not in anchors(tmp_path / "a.md")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_process_words(document: Path) -> None:
    text = document.read_text()
    found = [match.group(0) for pattern in PROCESS_WORDS for match in pattern.finditer(text)]
    assert found == []


def test_the_process_words_are_caught() -> None:
    text = "as issue 17 says <!-- BEGIN deployment (issue 3) --> (issue 9)"
    assert all(pattern.search(text) for pattern in PROCESS_WORDS)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_block_holds_a_captured_run(document: Path) -> None:
    """Each <!-- example:NAME --> block (filled by bash scripts/examples.sh) is closed and holds a command's output."""
    text = document.read_text()
    opened = re.findall(r"<!-- example:([a-z0-9-]+) -->", text)  # NAME in prose is a placeholder
    for name in opened:
        body = re.search(rf"<!-- example:{name} -->\n(.*?)<!-- /example:{name} -->", text, re.DOTALL)
        assert body is not None, f"example {name} is not closed"
        assert re.match(r"```console\n\$ temporal-migrator \S+|```console\n\$ cat ", body.group(1)), name
        assert len(body.group(1).splitlines()) >= 3, f"example {name} is empty"
