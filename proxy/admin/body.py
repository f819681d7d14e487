"""JSON bodies of the admin API: one object, known fields only, durations as strings.

docs/http-api.md (JSON in and out). Every refusal is a ``BadRequest`` naming the field,
so a client sees which part of its body is wrong.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aiohttp import web

from proxy.config import parse_duration
from proxy.errors import BadRequest

#: Deepest nesting of arrays and objects a body may have (THREAT_MODEL.md "Admin API").
MAX_DEPTH = 32


def _depth(raw: bytes) -> int:
    """How deep ``raw``'s arrays and objects nest, counted before parsing (a parser recursing
    on a hostile body would fail first); brackets inside strings do not count."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _valid_text(value: Any, path: str) -> None:
    """ValueError naming the first string (or key) that is not valid Unicode (a lone
    surrogate such as ``"\\ud800"``, which JSON can spell but UTF-8 cannot hold)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeError:
            raise ValueError(f"{path or 'body'}: not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _valid_text(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _valid_text(key, path or "body")
            _valid_text(item, f"{path}.{key}" if path else str(key))


def decode_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object (no body is ``{}``); else ValueError saying what it must be,
    which each API words in its own error shape."""
    if _depth(raw) > MAX_DEPTH:
        raise ValueError(f"body: nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as exc:
        raise ValueError("must be JSON") from exc
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    _valid_text(value, "")
    return value


async def read_body(request: web.Request) -> bytes:
    """The request body; over the listener's limit (1 MB) a BadRequest, not a 413 page."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise BadRequest(f"body: larger than {request.client_max_size} bytes") from exc


async def json_object(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    try:
        return decode_object(await read_body(request))
    except ValueError as exc:
        text = str(exc)
        raise BadRequest(text if ": " in text else f"the body {text}") from exc


def duration_field(body: dict[str, Any], name: str) -> timedelta | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f'{name}: write a duration string such as "24h"')
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from exc


def only_fields(body: dict[str, Any], *allowed: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; expected {', '.join(allowed)}")
