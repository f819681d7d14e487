"""Settings of one sandbox district: profile, credentials, shared scopes and injected faults.

Implements the knobs of docs/sandbox.md and the `sandbox` command row: profiles
that reproduce real districts (``infinite-campus``), switches that break one thing on purpose
(deny a scope, hide students, students without user accounts on 1.1, OAuth2, serve only one
OneRoster version), and a mutable ``Faults`` object that tests flip at run time to make the
district hang, reset, throttle or drop connections (docs/sandbox.md).
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Literal

#: The OneRoster 1.2 scope short names (docs/configuration.md), in the order the spec lists them.
ALL_SCOPES: tuple[str, ...] = (
    "roster.readonly",
    "roster-core.readonly",
    "roster-demographics.readonly",
    "resource.readonly",
    "gradebook.readonly",
    "gradebook.createput",
    "gradebook.delete",
)

SCOPE_URI_PREFIXES: tuple[str, ...] = (
    "https://purl.imsglobal.org/spec/or/v1p2/scope/",
    "https://purl.imsglobal.org/spec/or/v1p1/scope/",
)

PROFILES: dict[str, str] = {
    "default": "a plain OneRoster 1.1 + 1.2 district at the server root",
    "infinite-campus": (
        "Infinite Campus: base path /campus/api/oneroster/v1p2/<app>, keys shaped "
        "InfiniteCampus_<vendorKey>_<GUID>, x-vendor-authorization required on gradebook "
        "endpoints, 1.1 students and parents visible only with user accounts"
    ),
}

AuthMode = Literal["oauth1", "oauth2"]

#: OneRoster versions a district can serve: the names operators write (and proxy/config's
#: ``versions`` accepts) -> the path segment the sandbox routes on.
VERSION_NAMES: dict[str, str] = {"1.1": "v1p1", "v1p1": "v1p1", "1.2": "v1p2", "v1p2": "v1p2"}


def parse_versions(text: str) -> tuple[str, ...]:
    """``"1.1,1.2"`` -> ``("v1p1", "v1p2")``; ``ValueError`` for an empty or unknown version."""
    return normalise_versions(tuple(v.strip() for v in text.split(",") if v.strip()))


def normalise_versions(versions: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Served versions as path segments, in version order, each once."""
    if isinstance(versions, str):
        # A bare string would be read letter by letter; "1.2" meant ("1.2",).
        versions = (versions,)
    unknown = [v for v in versions if v not in VERSION_NAMES]
    if unknown:
        raise ValueError(
            f"unknown OneRoster version(s): {', '.join(map(repr, unknown))} (known: 1.1, 1.2)"
        )
    normalised = tuple(dict.fromkeys(VERSION_NAMES[v] for v in versions))
    if not normalised:
        raise ValueError("versions: at least one OneRoster version (1.1 or 1.2) must be served")
    return tuple(v for v in ("v1p1", "v1p2") if v in normalised)


@dataclass
class Faults:
    """Misbehaviour switched on at run time by tests; read on every request.

    Counts (``*_count``) are "the next k requests", decremented as requests meet the fault;
    ``None`` means "every request while the fault is set".
    """

    #: Requests whose path contains one of these strings are never answered ("*" = all).
    hang_paths: list[str] = field(default_factory=list)
    #: Seconds to wait before sending the response head.
    delay_head: float = 0.0
    #: Send the head (with the full Content-Length) and part of the body, then reset the TCP
    #: connection, so the client sees a broken transfer and never a complete 200.
    reset_mid_body: bool = False
    reset_mid_body_count: int | None = None
    #: Answer 503 with ``Retry-After: N`` (a busy district).
    status_503_retry_after: int | None = None
    status_503_count: int | None = None
    #: Answer 429 with ``Retry-After: N`` (a rate-limiting district, e.g. ClassLink).
    status_429_retry_after: int | None = None
    status_429_count: int | None = None
    #: Answer with ``Connection: close`` and close the connection after each response.
    close_keepalive: bool = False
    #: Close each connection right after its response *without* announcing it, as a district
    #: whose idle timeout is shorter than the client's does; the next request on a reused
    #: connection meets a closed socket.
    drop_keepalive: bool = False
    #: Reset, without answering, each request whose header lines add up to more than this
    #: many bytes (a district whose front end closes on a head larger than it takes).
    reset_heads_over: int | None = None
    #: Seconds between 1 KB chunks of every response body (a slow district).
    slow_body: float | None = None
    #: OAuth2 tokens stop working this many seconds after issue, whatever ``expires_in`` said.
    expire_tokens_after: float | None = None

    def take(self, name: str) -> bool:
        """Whether the counted fault ``name`` applies to this request (and count it)."""
        count_name = f"{name}_count"
        count = getattr(self, count_name)
        if count is None:
            return True
        if count <= 0:
            return False
        setattr(self, count_name, count - 1)
        return True


@dataclass
class SandboxOptions:
    """How one sandbox district behaves. ``None`` credentials are generated at start."""

    auth: AuthMode = "oauth1"
    #: ``None``/"default" or "infinite-campus".
    profile: str | None = None
    key: str | None = None
    secret: str | None = None
    #: Infinite Campus vendor credentials for ``x-vendor-authorization`` (generated if None).
    vendor_key: str | None = None
    vendor_secret: str | None = None
    #: The district's "Data to Share"; default every read scope plus gradebook writes.
    scopes: tuple[str, ...] = ALL_SCOPES
    deny_scopes: tuple[str, ...] = ()
    hide_students: bool = False
    #: No student, parent or guardian has a user account, so on OneRoster 1.1 none of them is
    #: visible (Infinite Campus's 1.1 rule, met by every one of them rather than 1 in 8) while
    #: 1.2 still shows them all. Applies on any profile.
    no_student_accounts: bool = False
    #: OneRoster versions served ("1.1", "1.2", or "v1p1", "v1p2"); paths of a version not
    #: served answer 404 like an unknown endpoint. ``resolved()`` normalises to v1p1/v1p2.
    versions: tuple[str, ...] = ("1.1", "1.2")
    #: Everything before ``/ims/oneroster``; ``None`` takes the profile's default.
    base_path: str | None = None
    #: Infinite Campus app name, the last segment of its default base path.
    app_name: str = "springfield"
    token_ttl: int = 3600
    seed: int = 2025
    #: When > 0, the ``users`` collection is this many generated users, streamed lazily.
    synthetic_users: int = 0
    #: Extra bytes of padding in each synthetic user, to make huge pages from few users.
    synthetic_padding: int = 0
    #: Most requests kept in ``RECORDED`` (the oldest half is dropped beyond it, so a long
    #: benchmark run stays bounded); ``None``: keep all; 0: record nothing.
    record_limit: int | None = 10_000
    faults: Faults = field(default_factory=Faults)

    @property
    def profile_name(self) -> str:
        return self.profile or "default"

    @property
    def granted_scopes(self) -> frozenset[str]:
        return frozenset(self.scopes) - frozenset(self.deny_scopes)

    @property
    def vendor_authorization(self) -> str | None:
        """The ``key:secret`` an Infinite Campus district expects on gradebook calls."""
        if self.profile_name != "infinite-campus":
            return None
        return f"{self.vendor_key}:{self.vendor_secret}"

    def resolved(self) -> SandboxOptions:
        """A copy with the profile applied and every missing credential generated."""
        profile = self.profile_name
        if profile not in PROFILES:
            raise ValueError(f"unknown sandbox profile {profile!r} (known: {', '.join(PROFILES)})")
        unknown = (set(self.scopes) | set(self.deny_scopes)) - set(ALL_SCOPES)
        if unknown:
            raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
        if self.auth not in ("oauth1", "oauth2"):
            raise ValueError(f"unknown auth {self.auth!r} (oauth1 or oauth2)")
        changes: dict[str, object] = {"versions": normalise_versions(self.versions)}
        base_path = self.base_path
        if base_path is None:
            base_path = (
                f"/campus/api/oneroster/v1p2/{self.app_name}"
                if profile == "infinite-campus"
                else ""
            )
        changes["base_path"] = base_path.rstrip("/")
        if profile == "infinite-campus":
            vendor_key = self.vendor_key or "SandboxLMS"
            changes["vendor_key"] = vendor_key
            changes["vendor_secret"] = self.vendor_secret or secrets.token_hex(16).upper()
            changes["key"] = self.key or f"InfiniteCampus_{vendor_key}_{uuid.uuid4()}"
        else:
            changes["key"] = self.key or f"sandbox-{secrets.token_hex(8)}"
        # Standard base64 on purpose: real district secrets carry '+', '/' and '=', which a
        # signer must percent-encode in the HMAC key.
        changes["secret"] = self.secret or base64.b64encode(secrets.token_bytes(26)).decode()
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
