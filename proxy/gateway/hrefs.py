"""``href`` rewriting in JSON bodies, while they stream (docs/http-api.md:
``[districts.X] rewrite_hrefs = true``).

OneRoster GUIDRefs carry an ``href`` naming the district's own URL
(``<base_url>/ims/oneroster/rostering/v1p2/schools/...``); a vendor that follows one bypasses the
proxy and fails. With ``rewrite_hrefs`` a JSON ``"href": "<base_url>/ims/oneroster/..."`` value
becomes ``"<public_url>/<appId>/ims/oneroster/..."``; the rest of the value and every other
byte are kept exactly.

How it stays correct without parsing the JSON:

* In valid JSON every ``"`` inside a string is escaped, so an unescaped ``"href"`` followed by
  ``:`` and ``"`` is always an object key ``href`` and the start of its string value; the one
  thing to rule out is a ``\\`` right before the first quote (then it is text inside another
  string). The value matches when its first bytes are the prefix, written plainly or with
  ``\\/`` for ``/`` (RFC 8259 §7 allows both; PHP's ``json_encode`` writes the latter).
* Whitespace around the colon is bounded (``_MAX_SPACE``), so a match has a fixed maximum length
  and the stream keeps only that many bytes back between chunks: memory stays flat whatever
  the body, and a body cut at any offset gives the same bytes as the whole body.
* Matching is one C-level regular-expression scan per chunk that starts from a literal, so a
  district without ``rewrite_hrefs`` pays nothing, and one with it pays a scan, not a parse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_MAX_SPACE = 64  # whitespace allowed on each side of the colon (pretty printers use 0-1)
_BACKSLASH = ord("\\")


def _json_text(text: str, *, ascii_only: bool = True) -> bytes:
    """``text`` as it sits between the quotes of a JSON string."""
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1].encode()


def is_json(content_type: str | None) -> bool:
    """``application/json`` or any ``+json`` media type (RFC 6839 §3.1)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


@dataclass(frozen=True, slots=True)
class HrefMatcher:
    """The compiled match for one district: built once per config load, shared by requests."""

    pattern: re.Pattern[bytes]
    longest: int  # the longest possible match, in bytes
    forms: tuple[bytes, ...]  # every JSON spelling of the prefix

    @classmethod
    def for_district(cls, base_url: str) -> HrefMatcher:
        prefix = base_url.rstrip("/") + "/ims/oneroster/"
        # A district may write non-ASCII as UTF-8 or as \u escapes, and "/" as is or as "\/".
        forms: set[bytes] = set()
        for plain in (_json_text(prefix), _json_text(prefix, ascii_only=False)):
            forms |= {plain, plain.replace(b"/", b"\\/")}
        alternatives = b"|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        space = rb"[ \t\r\n]{0,%d}" % _MAX_SPACE
        pattern = re.compile(rb'"href"' + space + b":" + space + b'"(' + alternatives + b")")
        longest = len(b'"href"') + 2 * _MAX_SPACE + 2 + max(len(f) for f in forms)
        return cls(pattern, longest, tuple(sorted(forms)))

    def named_in(self, body: bytes) -> bool:
        """Whether ``body`` holds the prefix in any JSON spelling: a match needs one, so a
        whole body without it is passed as it is after a few memchr-speed look-ups (a page
        whose hrefs name another host costs no regular-expression scan)."""
        return any(form in body for form in self.forms)

    def stream(self, public_prefix: str) -> HrefStream:
        """A rewriter for one response body; ``public_prefix`` is
        ``<public base>/<appId>/ims/oneroster/``."""
        return HrefStream(self, public_prefix)

    def rewrite(self, body: bytes, public_prefix: str) -> bytes:
        """A whole body at once (the small-page path): what streaming it would give."""
        if not self.named_in(body):
            return body
        stream = self.stream(public_prefix)
        return stream.feed(body) + stream.close()


class HrefStream:
    """Rewrites one body fed chunk by chunk; holds back at most ``longest - 1`` bytes."""

    __slots__ = ("_carry", "_keep", "_last", "_pattern", "_replacement")

    def __init__(self, matcher: HrefMatcher, public_prefix: str) -> None:
        self._pattern = matcher.pattern
        self._keep = matcher.longest - 1
        # SECURITY: the public prefix holds the request's Host (checked) or public_url and an
        # appId; JSON-escaped, so nothing in it can end the string or inject a key.
        self._replacement = _json_text(public_prefix)
        self._carry = b""
        self._last = -1  # the byte before the carry (for the backslash check), -1 at the start

    def feed(self, chunk: bytes) -> bytes:
        """The rewritten bytes that are final once ``chunk`` has arrived (maybe empty)."""
        buffer = self._carry + chunk if self._carry else chunk
        return self._scan(buffer, len(buffer) - self._keep)

    def close(self) -> bytes:
        """The bytes held back, rewritten: call once after the last chunk."""
        buffer, self._carry = self._carry, b""
        return self._scan(buffer, len(buffer))

    def _scan(self, buffer: bytes, cut: int) -> bytes:
        # Matches starting before ``cut`` are complete in ``buffer`` (none is longer than
        # ``keep + 1``); from ``cut`` on a match could still be growing, so those bytes wait.
        if cut <= 0:
            self._carry = buffer
            return b""
        parts: list[bytes] = []
        done = 0
        for match in self._pattern.finditer(buffer, 0, len(buffer)):
            start = match.start()
            if start >= cut:
                break
            before = buffer[start - 1] if start else self._last
            if before == _BACKSLASH:  # an escaped quote: text inside another string
                continue
            parts.append(buffer[done : match.start(1)])
            parts.append(self._replacement)
            done = match.end(1)
        end = max(cut, done)
        if end:
            self._last = buffer[end - 1]
        self._carry = buffer[end:]
        if not parts:
            return buffer[:end] if end < len(buffer) else buffer
        parts.append(buffer[done:end])
        return b"".join(parts)
