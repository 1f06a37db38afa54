"""Links in proxied HTML pages, rewritten to go through the proxy (upstream's rewriteHTML).

Upstream's proxy transport reads a text/html answer whole (gzip or deflate undone and done
again; any other encoding is left alone), and in every start tag rewrites the URL
attributes its table names (a href, img src, form action, ...) as it rewrites a redirect's
Location: an absolute path, or a URL on the backend's own host, is put under the proxy
path; relative links and other hosts are left alone. Everything but a rewritten tag passes
byte for byte; a rewritten tag is written again with its attributes double-quoted.
"""

from __future__ import annotations

import gzip
import html
import re
import zlib
from collections.abc import Callable

# Upstream's atomsToAttrs: the attributes that hold URLs, per element.
URL_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href"}),
    "applet": frozenset({"codebase"}),
    "area": frozenset({"href"}),
    "audio": frozenset({"src"}),
    "base": frozenset({"href"}),
    "blockquote": frozenset({"cite"}),
    "body": frozenset({"background"}),
    "button": frozenset({"formaction"}),
    "command": frozenset({"icon"}),
    "del": frozenset({"cite"}),
    "embed": frozenset({"src"}),
    "form": frozenset({"action"}),
    "frame": frozenset({"longdesc", "src"}),
    "head": frozenset({"profile"}),
    "html": frozenset({"manifest"}),
    "iframe": frozenset({"longdesc", "src"}),
    "img": frozenset({"longdesc", "src", "usemap"}),
    "input": frozenset({"src", "usemap", "formaction"}),
    "ins": frozenset({"cite"}),
    "link": frozenset({"href"}),
    "object": frozenset({"classid", "codebase", "data", "usemap"}),
    "q": frozenset({"cite"}),
    "script": frozenset({"src"}),
    "source": frozenset({"src"}),
    "video": frozenset({"poster", "src"}),
}
ENCODINGS = ("", "gzip", "deflate")

# Comments, and the raw text of script and style elements, are skipped whole; start tags
# are matched with their attributes (quoted values may hold '>').
_ATTRIBUTE = r"""[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?"""
_TOKENS = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<(?P<raw>script|style)\b(?P<rawattrs>(?:\s*"
    + _ATTRIBUTE
    + r")*)\s*>.*?(?:</(?P=raw)\s*>|\Z)"
    r"|<(?P<tag>[a-zA-Z][^\s/>]*)(?P<attrs>(?:\s*" + _ATTRIBUTE + r")*)\s*(?P<close>/?)>",
    re.DOTALL | re.IGNORECASE,
)
_ATTRIBUTES = re.compile(
    r"""(?P<name>[^\s"'>/=]+)(?:\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"'>]+)))?"""
)


def _rewrite_tag(tag: str, attrs: str, close: str, rewrite: Callable[[str], str]) -> str | None:
    """The tag written again with its URL attributes rewritten; None if none changed."""
    names = URL_ATTRIBUTES.get(tag.lower())
    if not names:
        return None
    parsed: list[tuple[str, str | None]] = []
    changed = False
    for m in _ATTRIBUTES.finditer(attrs):
        name = m.group("name").lower()
        raw = next(
            (v for v in (m.group("dq"), m.group("sq"), m.group("bare")) if v is not None), None
        )
        value = html.unescape(raw) if raw is not None else None
        if value is not None and name in names:
            new = rewrite(value)
            changed |= new != value
            value = new
        parsed.append((name, value))
    if not changed:
        return None
    out = [f"<{tag.lower()}"]
    for name, value in parsed:
        out.append(f" {name}" if value is None else f' {name}="{html.escape(value)}"')
    out.append("/>" if close else ">")
    return "".join(out)


def rewrite_html(page: bytes, rewrite: Callable[[str], str]) -> bytes:
    """The page with its start tags' URL attributes rewritten (bytes that are not UTF-8
    pass through unchanged)."""
    text = page.decode("utf-8", "surrogateescape")

    def replace(m: re.Match[str]) -> str:
        if m.group("raw"):
            opening = _rewrite_tag(m.group("raw"), m.group("rawattrs") or "", "", rewrite)
            if opening is None:
                return m.group(0)
            whole = m.group(0)
            end_of_opening = whole.index(">", m.end("rawattrs") - m.start()) + 1
            return opening + whole[end_of_opening:]
        if m.group("tag"):
            tag = _rewrite_tag(m.group("tag"), m.group("attrs") or "", m.group("close"), rewrite)
            return m.group(0) if tag is None else tag
        return m.group(0)

    return _TOKENS.sub(replace, text).encode("utf-8", "surrogateescape")


def decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body
