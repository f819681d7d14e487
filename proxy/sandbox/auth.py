"""How the sandbox district authenticates requests: OAuth 1.0a or OAuth2 client credentials.

Implements the authentication of docs/sandbox.md, independently of the proxy's
signer (nothing here imports ``proxy.signing``, so a signing bug cannot hide behind shared code):

* OAuth 1.0a two-legged requests as OneRoster 1.1 uses them (RFC 5849 §3.1-3.4, HMAC-SHA256 and
  HMAC-SHA1), verified by oauthlib's server side (``SignatureOnlyEndpoint``). Protocol
  parameters may come in the ``Authorization`` header, the query or a form body (§3.5); a
  single-part form-urlencoded body is part of the signature on every method, GET included
  (§3.4.1.3.1). The request URI is rebuilt from the raw request target exactly as received.
  Nonces are remembered (replays are refused) and timestamps more than 300 s away refused.
* OAuth2 client credentials (RFC 6749 §4.4) at ``<base_url>/oauth2/token``: opaque bearer tokens
  with ``expires_in`` and the granted ``scope`` (OneRoster 1.2 scope URIs, §3.3), client
  authentication by HTTP Basic or form fields (§2.3.1).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from oauthlib import common as oauth_common
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint

from proxy.sandbox.options import ALL_SCOPES, SCOPE_URI_PREFIXES, SandboxOptions

#: RFC 5849 §3.3: "servers MAY choose to restrict the time period"; 5 minutes, as districts do.
TIMESTAMP_LIFETIME = 300
_SUPPORTED_METHODS = ("HMAC-SHA1", "HMAC-SHA256")

# Characters oauthlib's strict form decoder accepts in a query string. A client may send others
# raw (``>``, ``|``, ``"``); a district decodes them as themselves, so percent-encoding them
# first changes nothing that is signed (§3.4.1.3.1 decodes before normalising) while letting
# oauthlib parse the query.
_OAUTHLIB_QUERY_SAFE = "".join(sorted(oauth_common.urlencoded))


class AuthError(Exception):
    """A request the district refuses with 401 (or ``status``)."""

    def __init__(self, description: str, *, status: int = 401, challenge: str = "OAuth") -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.challenge = challenge


class NonceCache:
    """Nonces seen within the timestamp window (RFC 5849 §3.3)."""

    def __init__(self, lifetime: float = 2 * TIMESTAMP_LIFETIME, limit: int = 200_000) -> None:
        self._seen: dict[tuple[str, str, str], float] = {}
        self._lifetime = lifetime
        self._limit = limit

    def add(self, key: str, timestamp: str, nonce: str) -> bool:
        """Record the nonce; False if it was already used."""
        now = time.monotonic()
        seen = self._seen
        # Every entry lives one lifetime, so insertion order is expiry order: expired entries
        # leave from the front, O(1) per request however busy the district is (a sweep of the
        # whole dict on each request made a loaded sandbox slower with every request). Past
        # ``limit`` live nonces the oldest go too: memory stays bounded under any load.
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > now and len(seen) < self._limit:
                break
            del seen[oldest]
        entry = (key, timestamp, nonce)
        expires = self._seen.get(entry)
        if expires is not None and expires > now:
            return False
        self._seen[entry] = now + self._lifetime
        return True


class _Validator(RequestValidator):  # type: ignore[misc]
    """oauthlib's questions answered for one client key/secret pair."""

    enforce_ssl = False

    def __init__(self, key: str, secret: str, nonces: NonceCache) -> None:
        super().__init__()
        # key -> secret: one pair, plus those a district "renewal" adds while the old one
        # still works (``OAuth1Verifier.accept``).
        self.credentials = {key: secret}
        self._nonces = nonces

    @property
    def allowed_signature_methods(self) -> tuple[str, ...]:
        return _SUPPORTED_METHODS

    @property
    def timestamp_lifetime(self) -> int:
        return TIMESTAMP_LIFETIME

    @property
    def dummy_client(self) -> str:
        return "sandbox-dummy-client"

    # Real districts accept keys of any shape (Infinite Campus's are ~70 characters) and the
    # nonces common clients make; oauthlib's defaults (20-30 safe characters) would not.
    def check_client_key(self, client_key: str) -> bool:
        return 0 < len(client_key) <= 512 and client_key.isprintable()

    def check_nonce(self, nonce: str) -> bool:
        return 0 < len(nonce) <= 512 and nonce.isprintable()

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return any(hmac.compare_digest(client_key.encode(), k.encode()) for k in self.credentials)

    def get_client_secret(self, client_key: str, request: Any) -> str:
        for key, secret in self.credentials.items():
            if hmac.compare_digest(client_key.encode(), key.encode()):
                return secret
        return "sandbox-dummy-secret"

    def validate_timestamp_and_nonce(
        self,
        client_key: str,
        timestamp: str,
        nonce: str,
        request: Any,
        request_token: str | None = None,
        access_token: str | None = None,
    ) -> bool:
        fresh = self._nonces.add(client_key, timestamp, nonce)
        if not fresh:
            request.validator_log["replay"] = True
        return fresh


class OAuth1Verifier:
    """Verifies OAuth 1.0a signed requests for one key/secret."""

    def __init__(self, key: str, secret: str) -> None:
        self._validator = _Validator(key, secret, NonceCache())
        self._endpoint = SignatureOnlyEndpoint(self._validator)

    def accept(self, key: str, secret: str) -> None:
        """Accept another key/secret as well (a district's credential renewal)."""
        self._validator.credentials[key] = secret

    def verify(
        self,
        *,
        method: str,
        scheme: str,
        host: str,
        raw_target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        """Raise ``AuthError`` unless the request carries a valid signature."""
        path, sep, query = raw_target.partition("?")
        if sep:
            query = urllib.parse.quote(
                query, safe=_OAUTHLIB_QUERY_SAFE, encoding="utf-8", errors="surrogateescape"
            )
        uri = f"{scheme}://{host}{path}{sep}{query}"
        try:
            text_body = body.decode("utf-8") if body else None
        except UnicodeDecodeError:
            raise AuthError(
                "The request body is not UTF-8; the signature cannot be checked."
            ) from None
        if not any(k.lower() == "content-type" for k in headers):
            text_body = None
        try:
            valid, request = self._endpoint.validate_request(uri, method, text_body, headers)
        except ValueError as exc:  # oauthlib's parser refuses malformed encodings
            raise AuthError(f"Malformed OAuth request: {exc}") from None
        if valid:
            return
        log = request.validator_log if request is not None else {}
        if request is None or not getattr(request, "signature", None):
            reason = "Missing or malformed OAuth 1.0a parameters"
        elif request.signature_method not in _SUPPORTED_METHODS:
            reason = f"Unsupported oauth_signature_method {request.signature_method!r}"
        elif log.get("replay"):
            reason = "oauth_nonce was already used (replay)"
        elif log.get("client") is False:
            reason = "Unknown oauth_consumer_key"
        elif log.get("signature") is False:
            reason = "OAuth signature invalid"
        else:
            reason = "Invalid OAuth 1.0a parameters (oauth_timestamp outside the allowed window?)"
        raise AuthError(reason)


# ---------------------------------------------------------------------------------------------
# OAuth2 client credentials


def parse_scope_param(text: str) -> set[str] | None:
    """Short names from a space-separated ``scope`` (short names or full URIs); None if unknown."""
    wanted: set[str] = set()
    for item in text.split():
        short = item
        for prefix in SCOPE_URI_PREFIXES:
            if item.startswith(prefix):
                short = item[len(prefix) :]
                break
        if short not in ALL_SCOPES:
            return None
        wanted.add(short)
    return wanted


def scope_uris(scopes: set[str] | frozenset[str], version: str = "v1p2") -> str:
    return " ".join(
        f"https://purl.imsglobal.org/spec/or/{version}/scope/{s}" for s in ALL_SCOPES if s in scopes
    )


@dataclass
class IssuedToken:
    scopes: frozenset[str]
    issued: float
    expires: float


@dataclass
class TokenStore:
    """Opaque bearer tokens issued by this district."""

    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    issued_count: int = 0

    def issue(self, scopes: frozenset[str], ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        self.tokens[token] = IssuedToken(scopes, now, now + ttl)
        self.issued_count += 1
        return token

    def lookup(self, token: str, expire_after: float | None) -> IssuedToken:
        entry = self.tokens.get(token)
        if entry is None:
            raise AuthError(
                "Unknown or revoked access token", challenge='Bearer error="invalid_token"'
            )
        now = time.time()
        if now >= entry.expires or (
            expire_after is not None and now >= entry.issued + expire_after
        ):
            raise AuthError("The access token expired", challenge='Bearer error="invalid_token"')
        return entry

    def revoke_all(self) -> None:
        self.tokens.clear()


class TokenRequestError(Exception):
    """An RFC 6749 §5.2 error response."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def client_credentials(authorization: str | None, form: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from HTTP Basic (form-decoded, RFC 6749 §2.3.1) or the form."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise TokenRequestError(401, "invalid_client", "Malformed Basic credentials.") from None
        client_id, sep, client_secret = decoded.partition(":")
        if not sep:
            raise TokenRequestError(401, "invalid_client", "Malformed Basic credentials.")
        return (
            urllib.parse.unquote_plus(client_id),
            urllib.parse.unquote_plus(client_secret),
        )
    if "client_id" in form and "client_secret" in form:
        return form["client_id"], form["client_secret"]
    raise TokenRequestError(401, "invalid_client", "Client authentication is required.")


def token_response(
    options: SandboxOptions,
    store: TokenStore,
    authorization: str | None,
    form: dict[str, str],
    also: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Answer a client-credentials token request, or raise ``TokenRequestError``. ``also``:
    more client id -> secret pairs accepted (a renewal in progress)."""
    grant = form.get("grant_type")
    if grant is None:
        raise TokenRequestError(400, "invalid_request", "grant_type is required.")
    client_id, client_secret = client_credentials(authorization, form)
    for other_id, other_secret in (also or {}).items():
        if hmac.compare_digest(client_id.encode(), other_id.encode()):
            options = replace(options, key=other_id, secret=other_secret)
    key_ok = hmac.compare_digest(client_id.encode(), str(options.key).encode())
    secret_ok = hmac.compare_digest(client_secret.encode(), str(options.secret).encode())
    # A client whose Basic credentials were form-encoded by a strict RFC 6749 client and one
    # that sent them raw both work: the raw form is also tried.
    if not (key_ok and secret_ok) and authorization and authorization[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(authorization[6:].strip()).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raw = ""
        raw_id, _, raw_secret = raw.partition(":")
        key_ok = hmac.compare_digest(raw_id.encode(), str(options.key).encode())
        secret_ok = hmac.compare_digest(raw_secret.encode(), str(options.secret).encode())
    if not (key_ok and secret_ok):
        raise TokenRequestError(401, "invalid_client", "Unknown client or wrong secret.")
    if grant != "client_credentials":
        raise TokenRequestError(
            400, "unsupported_grant_type", f"grant_type {grant!r} is not supported."
        )
    granted = options.granted_scopes
    requested_text = form.get("scope")
    # Scope URIs of the newest version served, unless the client asked in 1.1 URIs.
    version = "v1p2" if "v1p2" in options.versions else "v1p1"
    if requested_text:
        requested = parse_scope_param(requested_text)
        if requested is None:
            raise TokenRequestError(400, "invalid_scope", "Unknown scope requested.")
        if "/v1p1/scope/" in requested_text:
            version = "v1p1"
        scopes = frozenset(requested & granted)
        if not scopes:
            raise TokenRequestError(
                400, "invalid_scope", "None of the requested scopes is granted."
            )
    else:
        scopes = granted
    token = store.issue(scopes, options.token_ttl)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": options.token_ttl,
        "scope": scope_uris(scopes, version),
    }
