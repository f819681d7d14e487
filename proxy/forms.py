"""What a form body is, and the parameter names a query or form decodes to (the one place).

W3C HTML 4.01 §17.13.4 (``application/x-www-form-urlencoded``: ``+`` is a space, ``%XX`` an
octet of UTF-8) and RFC 5849 §3.4.1.3.1 (a single-part form body is an OAuth1 parameter
source, like the query). The gateway (what it refuses), the OAuth1 signer (what it signs) and
the token endpoint (what it reads) all ask here, so the three never disagree on what a form
body is.

docs/http-api.md (refused parameters): a query parameter or form field whose name, once
decoded, is a protocol parameter of the district's (``oauth_*``, RFC 5849 §3.4.1.3.1) or a
method override (``_method``, read by Rails, Laravel and Symfony on a POST) is refused before
anything is signed or sent. A name is judged the way the most lenient district framework reads
it: percent-decoded until nothing changes (a district may decode once more), surrounding
whitespace dropped, case folded, and ``.`` and spaces as ``_`` (PHP's reading of names).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

FORM_URLENCODED: Final = "application/x-www-form-urlencoded"

#: Decoded names (as normalised below) that are the district's, never the vendor's.
RESERVED_PREFIX: Final = "oauth_"
RESERVED_NAMES: Final = frozenset({"_method"})

# Characters a form-urlencoded body may hold (W3C HTML 4.01 §17.13.4 as oauthlib reads it), and
# a malformed escape: a body outside this shape is not "form-urlencoded" in the sense of
# RFC 5849 §3.4.1.3.1 and is left out of the signature, exactly as an oauthlib verifier leaves it.
_FORM_BODY: Final = re.compile(r"[A-Za-z0-9_.\-=&;:%+~,*@!()/?'$]*")
_BAD_ESCAPE: Final = re.compile(r"%[^0-9A-Fa-f]|%[0-9A-Fa-f][^0-9A-Fa-f]")
# Fields are split on "&" and, for refusing, on ";" too (older decoders split on both).
_FIELDS: Final = re.compile(r"[&;]")
# An escape (lower case) of an ASCII letter, "_" and a few neighbours, or of "%" itself.
_SUSPECT_ESCAPE: Final = re.compile(r"%(?:[4-7][0-9a-f]|25)")
# Percent-decodings of a name tried before it is judged (a district may decode again).
_DECODINGS: Final = 5


def is_form(content_type: str | None) -> bool:
    """Whether ``content_type`` names a form-urlencoded body (parameters ignored, any case)."""
    if not content_type:
        return False
    return content_type.partition(";")[0].strip().lower() == FORM_URLENCODED


def form_text(body: bytes | None, content_type: str | None) -> str | None:
    """The body as form-urlencoded text when RFC 5849 §3.4.1.3.1 makes it a parameter source
    (a well-formed single-part form, whatever the method), else None."""
    if not body or not is_form(content_type):
        return None
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not _FORM_BODY.fullmatch(text) or _BAD_ESCAPE.search(text):
        return None
    return text


def decoded_name(raw: str) -> str:
    """A field's name as a lenient district reads it (see the module docstring)."""
    name = raw.replace("+", " ")
    for _ in range(_DECODINGS):
        if "%" not in name:
            break
        decoded = unquote(name, errors="replace")
        if decoded == name:
            break
        name = decoded
    return name.strip().lower().replace(".", "_").replace(" ", "_")


def reserved_name(raw: str) -> str | None:
    """The first field name of the query or form string ``raw`` that is the district's
    (``oauth_*`` or ``_method``, decoded as ``decoded_name`` reads it), or None."""
    folded = raw.lower()
    if "oauth" not in folded and "method" not in folded:
        # Neither word is there as it is: a reserved name needs one of its letters, its "_"
        # or a "%" (encoded twice) escaped. Encoders escape none of those, so a query such
        # as ``filter=familyName%3D%27x%27`` is dismissed here, without splitting it.
        if "%" not in folded or _SUSPECT_ESCAPE.search(folded) is None:
            return None
    for field in _FIELDS.split(raw):
        name = decoded_name(field.partition("=")[0])
        if name.startswith(RESERVED_PREFIX) or name in RESERVED_NAMES:
            return name
    return None


__all__ = [
    "FORM_URLENCODED",
    "decoded_name",
    "form_text",
    "is_form",
    "reserved_name",
]
