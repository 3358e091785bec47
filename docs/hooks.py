"""MkDocs hook: the configuration reference, generated from the schema at build time.

`configuration.md` holds the marker below; the build replaces it with the lines of
`mtrl.config.describe()` (the "Config keys:" section of `mtrl train --help`), one code block per
section, so the page can never drift from the code. A page without the marker, or a schema that
cannot be imported, fails the build.
"""

from __future__ import annotations

import itertools

MARKER = "<!-- mtrl:config-keys -->"
PAGE = "configuration.md"


def section_of(line: str) -> str:
    """The section a describe() line belongs to: `policy.<arch>` for an architecture's options, the
    first part of the dotted key otherwise, and "top level" for keys without a dot."""
    parts = line.split()[0].split(".")
    if len(parts) == 1:
        return "top level"
    if parts[0] == "policy" and len(parts) == 3:
        return f"policy.{parts[1]}"
    return parts[0]


def config_reference() -> str:
    """describe()'s lines as markdown: a heading and a code block per section, in describe()'s order."""
    from mtrl.config import describe

    lines = describe()
    if not lines:
        raise RuntimeError("mtrl.config.describe() returned no lines")
    blocks = []
    for section, group in itertools.groupby(lines, key=section_of):
        title = "Top-level keys" if section == "top level" else f"`{section}`"
        block = "```text\n" + "\n".join(group) + "\n```"
        blocks.append(f'### {title}\n\n<div class="mtrl-config-keys" markdown>\n\n{block}\n\n</div>\n')
    return "\n".join(blocks)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RuntimeError(f"{PAGE} lost its marker {MARKER!r}: the configuration reference has nowhere to go")
    return markdown.replace(MARKER, config_reference())
