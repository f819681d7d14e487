"""The one exception hierarchy of oneroster-proxy, and its imsx rendering.

Every refusal the proxy makes itself is a ``ProxyError`` subclass; each class knows its HTTP
status and its imsx ``codeMinor`` value (OneRoster 1.1 §3.3 / 1.2 REST binding §3.3 status
codes). ``imsx_body`` renders the payload that docs/http-api.md prescribes for proxy-made errors and
``error_response`` the whole answer; the gateway wrapper (``proxy.app.Observed``), the admin
listener and the HTTP parser guard (``proxy.gateway.inbound_limits``) all answer through it, and
``refusal_response`` gives aiohttp's own refusals (405, 413 ...) the same shape.

    ProxyError
     ├── ConfigError            (not an HTTP error: a config with problems; carries every line)
     ├── BadRequest        400
     │    └── PathRefused  400
     ├── Unauthorized      401  (WWW-Authenticate: Bearer)
     ├── Forbidden         403
     ├── NotFound          404
     ├── RequestTimeout    408  (a request body that stopped arriving)
     ├── Conflict          409  (a name already taken, or still in use)
     │    └── Stale        409  (a store record changed since it was read; nothing written)
     ├── Gone              410  (a change-feed cursor older than the changes kept)
     ├── PayloadTooLarge   413
     ├── URITooLong        414
     ├── TooManyRequests   429  (Retry-After)
     ├── HeadersTooLarge   431
     ├── UpstreamError     502
     │    ├── UpstreamConnectError
     │    ├── UpstreamResetError
     │    ├── UpstreamBadResponse
     │    └── UpstreamTokenError
     ├── ServiceUnavailable 503 (Retry-After)
     │    ├── CredentialsUnusable  (a sealed secret that no longer opens: enter it again)
     │    └── StoreUnavailable
     ├── UpstreamTimeout   504
     │    └── UpstreamTokenTimeout  (the district's token endpoint)
     └── InternalError     500  (an unexpected exception; the traceback goes to the log only)

    BrokenTransfer              (not a ProxyError: the head was sent, the connection is cut)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

#: What a vendor reads when the district's OAuth2 token endpoint failed (502) or hung (504).
TOKEN_ENDPOINT_FAILED = "the district's token endpoint failed"


class ProxyError(Exception):
    """Base of every error the proxy reports itself."""

    status: ClassVar[int] = 500
    code_minor: ClassVar[str] = "internal_server_error"

    def __init__(self, description: str, *, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers

    def body(self) -> bytes:
        return imsx_body(self.description, self.code_minor)


class ConfigError(ProxyError):
    """A configuration that does not validate; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class BadRequest(ProxyError):
    status = 400
    code_minor = "invaliddata"


class PathRefused(BadRequest):
    """A path that decodes or normalises outside ``/ims/oneroster/``."""


class Unauthorized(ProxyError):
    """A refused bearer. ``vendor`` and ``token_id`` say whose token it was, where the token
    parsed far enough to tell (an id that parsed; a vendor whose token verified), for the
    access log line; they never reach the vendor."""

    status = 401
    code_minor = "unauthorisedrequest"

    def __init__(
        self, description: str, *, vendor: str | None = None, token_id: str | None = None
    ) -> None:
        super().__init__(description)
        self.vendor = vendor
        self.token_id = token_id

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        headers["WWW-Authenticate"] = 'Bearer realm="oneroster-proxy"'
        return headers


class Forbidden(ProxyError):
    status = 403
    code_minor = "forbidden"


class NotFound(ProxyError):
    status = 404
    code_minor = "unknownobject"


class RequestTimeout(ProxyError):
    """The vendor stopped sending its request body (slowloris)."""

    status = 408
    code_minor = "invaliddata"


class Conflict(ProxyError):
    """A district or connection name already taken, or a district still in use."""

    status = 409
    code_minor = "invaliddata"


class Stale(Conflict):
    """A store record changed since it was read (another writer won): nothing was written.
    The proxy's own operations read again and retry; one that keeps losing answers 409."""


class Gone(ProxyError):
    """410: what was asked for is no longer kept (a change-feed cursor older than the kept
    changes: docs/http-api.md "Change feed")."""

    status = 410
    code_minor = "invaliddata"


class PayloadTooLarge(ProxyError):
    status = 413
    code_minor = "invaliddata"


class URITooLong(ProxyError):
    status = 414
    code_minor = "invaliddata"


class TooManyRequests(ProxyError):
    status = 429
    code_minor = "server_busy"


class HeadersTooLarge(ProxyError):
    status = 431
    code_minor = "invaliddata"


class UpstreamError(ProxyError):
    """The district could not be used: unreachable, reset, unusable answer."""

    status = 502
    code_minor = "server_busy"
    kind: ClassVar[str] = "connect"


class UpstreamConnectError(UpstreamError):
    kind = "connect"


class UpstreamResetError(UpstreamError):
    kind = "reset"


class UpstreamBadResponse(UpstreamError):
    kind = "reset"


class UpstreamTokenError(UpstreamError):
    """The district's token endpoint failed. ``description`` names the endpoint and what it
    did, for the log line and ``check``; the vendor reads only ``TOKEN_ENDPOINT_FAILED``."""

    kind = "token"

    def body(self) -> bytes:
        # SECURITY: the district's token URL (its host, port and path) is the operator's to
        # know, not every vendor's (docs/http-api.md, 502 and 504).
        return imsx_body(TOKEN_ENDPOINT_FAILED, self.code_minor)


class ServiceUnavailable(ProxyError):
    status = 503
    code_minor = "server_busy"


class CredentialsUnusable(ServiceUnavailable):
    """A store connection's sealed secret no longer opens for where it would be sent (its
    record was changed other than through the proxy): its credentials must be entered again
    (THREAT_MODEL.md, the store). Only that connection fails; its check says so."""


class StoreUnavailable(ServiceUnavailable):
    """The token store cannot be reached and the token is not cached.

    ``description`` names the store (for logs and operators); vendors get a generic payload,
    since the store's address is none of their business."""

    def __init__(self, description: str, *, retry_after: float | None = 5.0) -> None:
        super().__init__(description, retry_after=retry_after)

    def body(self) -> bytes:
        return imsx_body(
            "the proxy's token store is unavailable; try again shortly", self.code_minor
        )


class UpstreamTimeout(ProxyError):
    status = 504
    code_minor = "server_busy"
    kind: ClassVar[str] = "timeout"


class UpstreamTokenTimeout(UpstreamTimeout):
    """The district's token endpoint did not answer within ``upstream_timeout``; the vendor
    reads only ``TOKEN_ENDPOINT_FAILED`` (see ``UpstreamTokenError``)."""

    kind = "token"

    def body(self) -> bytes:
        return imsx_body(TOKEN_ENDPOINT_FAILED, self.code_minor)


class InternalError(ProxyError):
    """An unexpected exception escaped every handler: still answered in the one error shape."""


class BrokenTransfer(Exception):
    """The district's body broke off after the head was sent; the vendor connection is cut."""


def imsx_body(description: str, code_minor: str) -> bytes:
    """The imsx failure payload (docs/http-api.md) for a proxy-made error."""
    payload: dict[str, Any] = {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {
                    "imsx_codeMinorFieldName": "TargetEndSystem",
                    "imsx_codeMinorFieldValue": code_minor,
                }
            ]
        },
    }
    return json.dumps(payload).encode()


#: docs/http-api.md "Who made an answer": every answer names its maker, so a vendor tells a
#: district's 401 (its OAuth signature refused) from the proxy refusing the vendor's own token.
ORIGIN = "OneRoster-Proxy-Origin"
#: The header as one (name, value) pair each, built once: the hot path appends or sets it.
FROM_DISTRICT = (ORIGIN, "district")
FROM_PROXY = (ORIGIN, "proxy")


def imsx_response(status: int, body: bytes, headers: Mapping[str, str]) -> web.Response:
    response = web.Response(status=status, body=body, content_type="application/json")
    response.headers[ORIGIN] = "proxy"  # every imsx answer is the proxy's own
    for name, value in headers.items():
        response.headers[name] = value
    return response


def error_response(err: ProxyError, *, status: int | None = None) -> web.Response:
    """The imsx answer to ``err``: its status (or ``status``), payload and headers."""
    return imsx_response(status or err.status, err.body(), err.headers())


def refusal_response(exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (405 from the router, 413 from ``request.read`` ...) keep their
    status and ``Allow`` / ``Retry-After`` but get the imsx payload, not aiohttp's plain text."""
    code_minor = "invaliddata" if exc.status < 500 else "server_busy"
    kept = {name: exc.headers[name] for name in ("Allow", "Retry-After") if name in exc.headers}
    return imsx_response(exc.status, imsx_body(exc.reason, code_minor), kept)
