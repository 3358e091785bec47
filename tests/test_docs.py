"""The documentation: relative links and anchors resolve, the documents the code names exist, no
private path leaks into the repository, and the site builds with `mkdocs build --strict`.

Fast and offline; the build test is skipped where MkDocs is not installed (the `docs` extra)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:.+?)\1")
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+[\"'(].*)?$", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.I)
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
ATTR_ID = re.compile(r"\s*\{[^}]*#([\w-]+)[^}]*\}\s*$")
MKDOCSTRINGS = re.compile(r"^:::[ \t]+([\w.]+)", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")
DOC_PATH = re.compile(r"\bdocs/[\w.-]+(?:/[\w.-]+)*\.md\b")


def markdown_files() -> list[Path]:
    """Every markdown file of the site (docs/, recursively) and README.md."""
    return sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]


def prose(text: str, code_spans: bool = False) -> str:
    """The text outside fenced code blocks and HTML comments, and outside inline code spans unless
    `code_spans` (line count kept)."""
    out, fence = [], None
    for line in HTML_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text).splitlines():
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(2)[0] * len(m.group(2))
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            out.append("")
        else:
            out.append(line if code_spans else INLINE_CODE.sub("", line))
    return "\n".join(out)


def slugify(value: str, separator: str = "-") -> str:
    """Python-Markdown's default `toc` slugify: ASCII, lower case, punctuation dropped, runs of
    spaces and hyphens to one separator."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(rf"[{separator}\s]+", separator, value)


def heading_text(raw: str) -> str:
    """A heading's text as the rendered page shows it (links to their text, code marks dropped)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    return text.replace("`", "").replace("*", "")


def anchors(path: Path) -> set[str]:
    """The ids of a page's headings (with MkDocs' `_1`, `_2` suffixes for repeats), explicit
    `{#id}` attributes, and the objects of its mkdocstrings `::: name` blocks."""
    text = path.read_text(encoding="utf-8")
    ids: set[str] = set(MKDOCSTRINGS.findall(text))
    seen: dict[str, int] = {}
    for line in prose(text, code_spans=True).splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        title = m.group(2)
        explicit = ATTR_ID.search(title)
        if explicit:
            ids.add(explicit.group(1))
            continue
        slug = slugify(heading_text(title))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        ids.add(slug if n == 0 else f"{slug}_{n}")
    return ids


def link_targets(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image in a markdown file's prose."""
    text = prose(path.read_text(encoding="utf-8"))
    found = []
    for pattern in (LINK, REF_DEF, HTML_LINK):
        for m in pattern.finditer(text):
            found.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return sorted(found)


def rel(path: Path) -> str:
    """A path relative to the repository where it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(files: list[Path]) -> list[str]:
    """'file:line: target (why)' for every relative link whose file, or whose heading in a docs
    page, does not exist."""
    problems, cache = [], {}
    for path in files:
        for line, target in link_targets(path):
            if SCHEME.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{rel(path)}:{line}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
                continue
            if anchor and dest.suffix == ".md" and dest.is_relative_to(DOCS):
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if anchor not in cache[dest]:
                    problems.append(f"{where} (no heading with id '{anchor}' in {rel(dest)})")
    return problems


def test_relative_links_and_anchors_resolve():
    problems = broken_links(markdown_files())
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_link_check_catches_a_broken_link_and_a_broken_anchor(tmp_path):
    page = DOCS / "index.md"
    other = tmp_path / "page.md"
    other.write_text(
        f"# Title\n\n[gone](no-such-page.md) [bad anchor]({page}#no-such-heading) "
        f"[good anchor]({page}#where-to-go-next) `[in code](nowhere.md)`\n",
        encoding="utf-8",
    )
    problems = broken_links([other])
    assert len(problems) == 2, problems
    assert any("no-such-page.md (no such file)" in p for p in problems), problems
    assert any("no heading with id 'no-such-heading'" in p for p in problems), problems


def test_slugify_matches_python_markdown():
    toc = pytest.importorskip("markdown.extensions.toc", reason="Python-Markdown is installed with the docs extra")
    for path in markdown_files():
        for line in prose(path.read_text(encoding="utf-8"), code_spans=True).splitlines():
            m = HEADING.match(line)
            if m and not ATTR_ID.search(m.group(2)):
                text = heading_text(m.group(2))
                assert slugify(text) == toc.slugify(text, "-"), (path, text)


def test_documents_named_in_the_code_exist():
    missing = []
    for folder in ("mtrl", "envs", "scripts"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".sh", ".md", ".yaml", ".toml") or not path.is_file():
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                for name in DOC_PATH.findall(line):
                    if not (ROOT / name).is_file():
                        missing.append(f"{path.relative_to(ROOT)}:{i}: {name}")
    assert not missing, "documents named in the code that do not exist:\n" + "\n".join(missing)


def repository_files() -> list[Path]:
    """Tracked files and untracked files git does not ignore (so new files count before their commit)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the repository's files cannot be listed")
    return [ROOT / p for p in sorted(set(out.decode().split("\0"))) if p and (ROOT / p).is_file()]


# Built by concatenation so that this file does not match itself.
PRIVATE_NOTES = "ALGORITHMS" + ".md"
PRIVATE_DIR = re.compile(r"(?<![\w.-])shared" + "/" + r"|/work/" + "shared" + r"\b")


def test_nothing_in_the_repository_names_the_private_notes():
    hits = []
    for path in repository_files():
        text = path.read_bytes().decode("utf-8", errors="ignore")
        if PRIVATE_NOTES not in text and not PRIVATE_DIR.search(text):
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if PRIVATE_NOTES in line or PRIVATE_DIR.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:120]}")
    assert not hits, (
        f"the repository names {PRIVATE_NOTES} or the shared directory (the docs pages hold that "
        "material now):\n" + "\n".join(hits)
    )


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="MkDocs is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # the configuration reference is generated from the schema (docs/hooks.py); the keys as a fresh
    # process sees them (this one may hold plug-ins that other tests registered)
    code = "from mtrl.config import describe; print('\\n'.join(line.split()[0] for line in describe()))"
    listed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    page = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    keys = listed.stdout.split()
    assert listed.returncode == 0 and "train.total_steps" in keys, listed.stderr
    assert all(key in page for key in keys), [key for key in keys if key not in page]
