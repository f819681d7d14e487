"""The one rule for the names an operator chooses: appIds, vendor names, district names.

docs/configuration.md: they match ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}`` and are not ``.`` or
``..``. ``config validate`` refuses any other (``proxy.config``), and the gateway's path parser
(``proxy.gateway.paths``) refuses any other appId segment with 400 before looking it up, so a name
that validates can always be routed and one that cannot be routed never validates. Every name is
also a safe URL path segment and metric label: no ``/``, no escape, not a dot-segment.
"""

from __future__ import annotations

import re

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
NAME_RULE = "1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or a digit"
_NAME = re.compile(NAME_PATTERN)


def is_name(value: str) -> bool:
    # The first character excludes "." and ".." already; said again because they are the
    # dot-segments (RFC 3986 §5.2.4) that must never name anything.
    return _NAME.fullmatch(value) is not None and value not in (".", "..")
