"""HTML message bodies (Intercom, Zammad) to plain text, with the standard library only.

Block elements and ``<br>`` become line breaks, scripts and styles are dropped, entities are
decoded, and runs of whitespace collapse as a browser would show them:

>>> html_to_text("<p>Hi,</p><p>my <b>router</b>&nbsp;keeps<br>rebooting &amp; 路由器一直重启</p>")
'Hi,\\nmy router keeps\\nrebooting & 路由器一直重启'
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
    "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "table", "tr", "ul",
})
_SKIPPED = frozenset({"script", "style", "head", "title", "template", "noscript"})
_SPACES = re.compile(r"[ \t\r\n\f\u00a0]+")
_BREAK = "\x00"  # a line break we emitted, kept apart from whitespace in the source


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag == "br" or tag in _BLOCKS:
            self.parts.append(_BREAK)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" or tag in _BLOCKS:
            self.parts.append(_BREAK)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append(_BREAK)

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment, one line per block, no blank lines."""
    parser = _Extractor()
    parser.feed(html)
    parser.close()
    flat = _SPACES.sub(" ", "".join(parser.parts))
    lines = (line.strip() for line in flat.split(_BREAK))
    return "\n".join(line for line in lines if line)
