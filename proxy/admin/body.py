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


def decode_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object (no body is ``{}``); else ValueError saying what it must be,
    which each API words in its own error shape."""
    try:
        value = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ValueError("must be JSON") from exc
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    try:
        return decode_object(await request.read())
    except ValueError as exc:
        raise BadRequest(f"the body {exc}") from exc


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
