"""The upstream policy: what reaches a district, how often, and when the proxy stops trying.

docs/http-api.md (the paragraph on retries and the circuit breaker); RFC 6749 §5.1
and RFC 6750 §3.1 for the OAuth2 401. The whole policy, in the order ``Upstream.send`` applies
it to one request:

* Every attempt is signed anew (``authorization``): a fresh OAuth1 nonce and timestamp, or the
  OAuth2 token the connection's token source holds now.
* Before each attempt the district's circuit must be closed (``Circuits.check``; an open
  circuit is 503 with ``Retry-After``, no request sent) and its rate must allow a request
  (``Limits.district_rate``).
* Sent once, never again: a PUT, POST, DELETE or PATCH (the district may have acted on it),
  and any request whose body streams (over ``BUFFER_LIMIT``, not held to be sent again).
* Retried, GET (and HEAD, GET without the body) only: a connect failure or a reset before the
  answer's head (unless that failure opened the circuit), and a 429 or 503 whose
  ``Retry-After`` is at most ``MAX_RETRY_AFTER`` seconds; at most ``MAX_ATTEMPTS`` attempts.
* Backoff before retry *n*: the district's ``Retry-After`` (if any) plus full jitter, uniform
  in [0, min(``BACKOFF_CAP``, ``BACKOFF_BASE`` * 2**n)], so proxies do not return in step.
* Every attempt and every wait fit inside ``upstream_timeout``: a retry that would not is not
  made, and the last answer (or error) stands.
* The circuit counts what says the district is down: a connect failure or a timeout
  (``Circuits.record_failure``), once per request however many attempts a GET made. What a
  request can bring on itself does not count, so that one vendor cannot pause a district for
  the others: the district closing or resetting a connection it had accepted (oversized
  headers, a request it refuses), an unusable answer, and any answer at all, whatever its
  status, which counts as a success (a 4xx is the request's fault, a 5xx still an answer).
* OAuth2 401: the token is dropped (``invalidate``) and the same request is sent once more with
  a fresh one, whatever its method, if its body is held; a second 401 goes to the vendor.

Transport (sessions, timeouts, error translation, streaming) is ``proxy.gateway.forward``'s.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from proxy.errors import UpstreamConnectError, UpstreamError, UpstreamResetError, UpstreamTimeout
from proxy.gateway import forward
from proxy.metrics import Children

if TYPE_CHECKING:
    from proxy.gateway.context import Services
    from proxy.gateway.runtime import Connection

# Bodies up to this size are read before sending, so that a GET may be retried and an OAuth2
# district's 401 may be answered with a fresh token; larger ones stream and are sent once.
BUFFER_LIMIT = 1024 * 1024
# Attempts per GET (the first and two retries), all inside upstream_timeout.
MAX_ATTEMPTS = 3
# Retry-After values a GET retry will wait out (docs/http-api.md: "a few seconds at most").
MAX_RETRY_AFTER = 5.0
# Backoff before retry n (n = 1, 2, ...): uniform in [0, min(BACKOFF_CAP, BACKOFF_BASE * 2**n)].
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0

# Reads: retried like GET (HEAD is GET without the body, RFC 9110 §9.3.2), pooled connections.
READS = frozenset({"GET", "HEAD"})
_monotonic = time.monotonic
_RESETS = (UpstreamConnectError, UpstreamResetError)


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): exponential backoff with full
    jitter, added to any Retry-After the district gave (which is a minimum, and the jitter
    keeps many proxies from coming back in the same instant)."""
    backoff = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * (2**attempt)))
    return (retry_after or 0.0) + backoff


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    return None  # an HTTP-date Retry-After is a long wait: not worth retrying within a request


def should_retry(method: str, response: forward.Response) -> float | None:
    """Seconds to wait before retrying a GET the district pushed back on, or None."""
    if method not in READS or response.status not in (429, 503):
        return None
    after = parse_retry_after(response.headers.get("Retry-After"))
    if after is None or after > MAX_RETRY_AFTER:
        return None
    return after


def _retry_in(attempt: int, retry_after: float | None, deadline: float) -> float | None:
    """The wait before retry ``attempt``, or None when no attempt is left or the wait would end
    past the deadline."""
    if attempt >= MAX_ATTEMPTS:
        return None
    delay = retry_delay(attempt, retry_after)
    return delay if _monotonic() + delay < deadline else None


def authorization(
    conn: Connection, out: forward.Outgoing, content_type: str | None, token: str | None
) -> list[tuple[str, str]]:
    """The headers of one attempt: the request's own plus the district's ``Authorization``
    (RFC 5849 §3.5.1 OAuth1 header, or RFC 6750 §2.1 bearer token)."""
    headers = list(out.base_headers)
    if conn.signer is not None:
        body = out.body if isinstance(out.body, bytes) else None
        signed = conn.signer.authorization(
            out.method, out.url, body=body, content_type=content_type
        )
        headers.append(("Authorization", signed))
    elif token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    return headers


class Upstream:
    """Sends one request to its district under the policy above (see the module docstring)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._timers = Children(services.metrics.upstream_duration)

    async def send(
        self, conn: Connection, out: forward.Outgoing, content_type: str | None, timeout: float
    ) -> forward.Response:
        """The district's answer (its head; the caller reads and releases the body)."""
        services = self.services
        circuits = services.circuits
        district = conn.district
        deadline = _monotonic() + timeout
        replayable = out.body is None or isinstance(out.body, bytes)
        read = out.method in READS
        retry_get = read and replayable
        # Writes never share a pooled connection the district may have closed meanwhile.
        session = services.session if read else services.write_session
        source = conn.token_source
        refreshed = False
        counted = False  # this request's failure is on the circuit already
        attempt = 0
        while True:
            attempt += 1
            token = None
            if source is not None:
                try:
                    token = await source.token()
                except (UpstreamError, UpstreamTimeout):
                    self._count_error(conn, "token")
                    raise
            headers = authorization(conn, out, content_type, token)
            circuits.check(district, deadline)
            if district.rate_limit is not None:
                await services.limits.district_rate(district, deadline)
            started = _monotonic()
            remaining = deadline - started
            if remaining <= 0:
                self._count_error(conn, "timeout")
                raise UpstreamTimeout("the district did not answer in time")
            try:
                with forward.UPSTREAM_ERRORS:
                    response = await forward.start(
                        session,
                        out,
                        headers,
                        remaining,
                        verify=district.tls_verify,
                        pool=services.pool,
                    )
            except _RESETS as exc:
                if isinstance(exc, UpstreamConnectError):
                    if not counted:
                        circuits.record_failure(district)
                        counted = True
                else:
                    # SECURITY: the district accepted the connection and closed it on what it
                    # read; the request may have brought that on itself (docs/http-api.md).
                    circuits.record_neutral(district)
                # A reset before the head may mean the district read the request: only a GET
                # is tried again, and not once the circuit has opened on this district.
                if retry_get and circuits.state(district) == "closed":
                    delay = _retry_in(attempt, None, deadline)
                    if delay is not None:
                        await asyncio.sleep(delay)
                        continue
                self._count_error(conn, exc.kind)
                raise
            except UpstreamTimeout:
                if not counted:
                    circuits.record_failure(district)
                self._count_error(conn, "timeout")
                raise
            except UpstreamError as exc:
                circuits.record_neutral(district)
                self._count_error(conn, exc.kind)
                raise
            services.metrics.tally.observe(self._timers[district.name], _monotonic() - started)
            circuits.record_success(district)

            if response.status == 401 and token is not None and replayable and not refreshed:
                assert source is not None
                response.release()
                refreshed = True
                await source.invalidate(token)
                continue
            if retry_get:
                wait = should_retry(out.method, response)
                if wait is not None:
                    delay = _retry_in(attempt, wait, deadline)
                    if delay is not None:
                        response.release()
                        await asyncio.sleep(delay)
                        continue
            return response

    def _count_error(self, conn: Connection, kind: str) -> None:
        self.services.metrics.upstream_errors.labels(conn.district.name, kind).inc()


__all__ = ["BUFFER_LIMIT", "MAX_ATTEMPTS", "Upstream", "authorization", "retry_delay"]
