"""The troubleshooting checklist: ``check APP_ID``, ``check --all`` and the admin ``check``.

SPEC.md "``check APP_ID``: the troubleshooting checklist". Every item is judged live against the
district and read-only: the only requests are GETs with ``limit=1`` (plus the OAuth2 token
request), signed exactly as the gateway signs them, through the connection's own
``proxy.runtime.Connection`` (OAuth1 signer or OAuth2 token source, ``x-vendor-authorization``
on gradebook endpoints). Each probe is bounded by ``[server] upstream_timeout``, and the probes
that do not depend on each other run concurrently, so a hanging district costs one timeout.

The items, in SPEC order, and what each one needs before it can be judged:

    connection_enabled, not_expired, infinite_campus_key    the config alone
    district_reachable      an unsigned GET of the rostering orgs collection gets any answer
    token_endpoint          (oauth2) a token for key/secret; ``skip`` for oauth1
    credentials_accepted    a signed GET ``orgs?limit=1`` is not 401   (needs the two above)
    data_shared             each granted read scope's cheapest endpoint answers 200, and no
                            read scope outside ``scopes`` answers 200  (needs credentials)
    students_visible        ``students?limit=1`` holds a student       (needs credentials)
    vendor_authorization    a gradebook GET with the vendor header is not 401 (needs credentials)

An item that cannot be judged because an earlier one failed is ``skip``; a warning (expiry
within 30 days) is ``ok`` with the warning in its detail. Details never hold a key, secret or
token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from . import __version__, forward
from .config import (
    EXPIRY_WARNING,
    Config,
    ConnectionConfig,
    DistrictConfig,
    infinite_campus_vendor_key,
)
from .errors import NotFound, ProxyError
from .runtime import Connection, build_runtime
from .scopes import (
    GRADEBOOK_CREATEPUT,
    GRADEBOOK_DELETE,
    GRADEBOOK_READ,
    RESOURCE,
    ROSTER,
    ROSTER_CORE,
    ROSTER_DEMOGRAPHICS,
    classify,
)
from .signing.oauth2 import OAuth2TokenSource

Status = Literal["ok", "fail", "skip"]

#: The checklist, in the order SPEC lists it (and reports show it).
CHECKS: tuple[str, ...] = (
    "connection_enabled",
    "not_expired",
    "district_reachable",
    "token_endpoint",
    "credentials_accepted",
    "data_shared",
    "students_visible",
    "vendor_authorization",
    "infinite_campus_key",
)

#: SPEC's "hint on failure" of each item; every failing detail ends with it.
_VERSION_NAMES = {"v1p1": "1.1", "v1p2": "1.2"}
HINTS: dict[str, str] = {
    "connection_enabled": "enable the connection",
    "not_expired": (
        "renew the connection in the district's SIS (1.1 connections expire after one year) "
        "or issue new credentials"
    ),
    "district_reachable": "check base URL, DNS, TLS",
    "token_endpoint": "check token URL, key, secret",
    "credentials_accepted": "key/secret wrong or expired",
    "data_shared": 'align the district\'s "Data to Share" with `scopes`',
    "students_visible": (
        "on OneRoster 1.1 (Infinite Campus) students and parents need user accounts"
    ),
    "vendor_authorization": (
        "set the vendor's key:secret; the district must enable Grade Book sync"
    ),
    "infinite_campus_key": "the key belongs to another vendor key",
}

#: ``check --all`` checks this many connections at once, so a large config does not open
#: hundreds of district connections in one burst.
CHECK_ALL_CONCURRENCY = 8
#: The most of a probe's body that is read (``limit=1`` answers are a few KB).
MAX_PROBE_BODY = 1024 * 1024

_WRITE_SCOPES = (GRADEBOOK_CREATEPUT, GRADEBOOK_DELETE)
_GRADEBOOK_SCOPES = frozenset({GRADEBOOK_READ, GRADEBOOK_CREATEPUT, GRADEBOOK_DELETE})
_ROSTER_SCOPES = frozenset({ROSTER, ROSTER_CORE})
#: Read scopes in the order ``data_shared`` reports them.
_READ_SCOPES = (ROSTER_CORE, ROSTER, ROSTER_DEMOGRAPHICS, RESOURCE, GRADEBOOK_READ)

# The cheapest endpoint of each kind, per OneRoster version ("{}" is an id to fill in). Each one's
# scope is asserted against proxy.scopes below, so the probes cannot drift from the gateway.
_PATHS: dict[str, dict[str, str]] = {
    "v1p1": {
        "orgs": "v1p1/orgs",
        "schools": "v1p1/schools",
        "school_classes": "v1p1/schools/{}/classes",
        "demographics": "v1p1/demographics",
        "resources": "v1p1/resources",
        "lineItems": "v1p1/lineItems",
        "students": "v1p1/students",
    },
    "v1p2": {
        "orgs": "rostering/v1p2/orgs",
        "schools": "rostering/v1p2/schools",
        "school_classes": "rostering/v1p2/schools/{}/classes",
        "demographics": "rostering/v1p2/demographics",
        "resources": "resources/v1p2/resources",
        "lineItems": "gradebook/v1p2/lineItems",
        "students": "rostering/v1p2/students",
    },
}
#: Which probe shows each read scope is shared.
_SCOPE_PROBE = {
    ROSTER_CORE: "orgs",
    ROSTER: "school_classes",
    ROSTER_DEMOGRAPHICS: "demographics",
    RESOURCE: "resources",
    GRADEBOOK_READ: "lineItems",
}


def _assert_probe_scopes() -> None:
    expected = {
        "orgs": _ROSTER_SCOPES,
        "schools": _ROSTER_SCOPES,
        "school_classes": frozenset({ROSTER}),
        "demographics": frozenset({ROSTER_DEMOGRAPHICS}),
        "resources": frozenset({RESOURCE}),
        "lineItems": frozenset({GRADEBOOK_READ}),
        "students": _ROSTER_SCOPES,
    }
    for paths in _PATHS.values():
        for kind, path in paths.items():
            scopes = classify(path.replace("{}", "x"), "GET").scopes
            if scopes != expected[kind]:
                raise AssertionError(f"check probe {path} needs {sorted(scopes)}")


_assert_probe_scopes()


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One checklist item: ``status`` is ``ok``, ``fail`` or ``skip``; ``detail`` is one line."""

    name: str
    status: Status
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Report:
    """The checklist of one connection; ``ok`` is true when no item failed."""

    app: str
    ok: bool
    checks: list[Item]

    def as_json(self) -> dict[str, Any]:
        return {"app": self.app, "ok": self.ok, "checks": [i.as_json() for i in self.checks]}

    def item(self, name: str) -> Item:
        for item in self.checks:
            if item.name == name:
                return item
        raise KeyError(name)

    @property
    def failed(self) -> list[Item]:
        return [i for i in self.checks if i.status == "fail"]

    def summary(self) -> str:
        """``7/9 ok, 2 skipped`` or ``credentials_accepted: <detail>`` (first failure)."""
        if self.ok:
            passed = sum(1 for i in self.checks if i.status == "ok")
            skipped = len(self.checks) - passed
            text = f"{passed}/{len(self.checks)} ok"
            return text + (f", {skipped} skipped" if skipped else "")
        first, *rest = self.failed
        more = f" (+{len(rest)} more failing)" if rest else ""
        return f"{first.name}: {first.detail}{more}"


def _fail(name: str, what: str) -> Item:
    """A failing item: what was seen, then SPEC's hint on what to do."""
    return Item(name, "fail", f"{what}: {HINTS[name]}")


# -- probes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """What one GET of the district returned (``status`` None: no answer, see ``error``)."""

    path: str  # after /ims/oneroster/, query included
    status: int | None
    error: str | None = None
    data: Any = None
    total: int | None = None  # X-Total-Count
    elapsed: float = 0.0

    def says(self) -> str:
        """``GET v1p1/orgs?limit=1 answered 200`` / ``... failed: <why>``."""
        if self.status is None:
            return f"GET {self.path} failed: {self.error}"
        text = f"GET {self.path} answered {self.status}"
        description = _imsx_description(self.data) if self.status >= 400 else None
        return f'{text} ("{description}")' if description else text


def _imsx_description(data: Any) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("imsx_description"), str):
        text = " ".join(data["imsx_description"].split())
        return text[:97] + "..." if len(text) > 100 else text
    return None


class _Prober:
    """Signed, memoised GETs of one connection's district, each bounded by ``timeout``."""

    def __init__(self, conn: Connection, session: aiohttp.ClientSession, timeout: float) -> None:
        self.conn = conn
        self.session = session
        self.timeout = timeout
        self.token: str | None = None
        self._seen: dict[str, asyncio.Task[Probe]] = {}

    def url(self, path: str) -> str:
        return self.conn.upstream_prefix + path

    async def unsigned(self, path: str) -> Probe:
        return await self._send(path, signed=False)

    def get(self, path: str) -> Awaitable[Probe]:
        """The signed GET of ``path``; concurrent callers of one path share one request."""
        task = self._seen.get(path)
        if task is None:
            task = asyncio.ensure_future(self._send(path, signed=True))
            self._seen[path] = task
        return task

    async def _send(self, path: str, *, signed: bool) -> Probe:
        url = self.url(path)
        headers = [
            ("Accept", "application/json"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", f"oneroster-proxy-check/{__version__}"),
            ("X-Request-Id", uuid.uuid4().hex),
        ]
        if signed:
            if classify(path.partition("?")[0], "GET").gradebook and self.conn.vendor_header:
                headers.append(("x-vendor-authorization", self.conn.vendor_header))
            if self.conn.signer is not None:
                headers.append(("Authorization", self.conn.signer.authorization("GET", url)))
            elif self.token is not None:
                headers.append(("Authorization", f"Bearer {self.token}"))
        started = time.monotonic()
        try:
            response = await forward.send(
                self.session,
                forward.Outgoing("GET", url, [], None),
                headers,
                self.timeout,
                verify=self.conn.district.tls_verify,
            )
            try:
                with forward.upstream_errors():
                    body = await forward.read_up_to(response.content, MAX_PROBE_BODY)
            finally:
                response.release()
        except ProxyError as exc:
            return Probe(
                path, None, error=_error_text(exc, self.timeout), elapsed=time.monotonic() - started
            )
        try:
            data = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            data = None
        total_header = response.headers.get("X-Total-Count", "")
        total = int(total_header) if total_header.strip().isdigit() else None
        return Probe(
            path, response.status, data=data, total=total, elapsed=time.monotonic() - started
        )

    def close(self) -> None:
        for task in self._seen.values():
            task.cancel()


def _error_text(exc: ProxyError, timeout: float) -> str:
    if exc.status == 504:
        return f"no answer within {timeout:g}s (upstream_timeout)"
    cause = exc.__cause__
    reason = f" ({_short(cause)})" if cause is not None and _short(cause) else ""
    return f"{exc.description}{reason}"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:157] + "..." if len(text) > 160 else text


def _records(data: Any) -> list[Any] | None:
    """The records of a OneRoster collection answer (``{"users": [...]}``), or None."""
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list):
                return value
    return None


# -- the checklist ---------------------------------------------------------------------------


async def run_check(
    config: Config,
    app_id: str,
    *,
    session: aiohttp.ClientSession | None = None,
    now: datetime | None = None,
) -> Report:
    """Run every checklist item for connection ``app_id`` live against its district.

    ``session`` is an upstream client session to use (the gateway's, from the admin API); one
    is opened and closed here if none is given. ``NotFound`` for an unknown ``app_id``.
    """
    conn_cfg = config.connections.get(app_id)
    if conn_cfg is None:
        raise NotFound(f"unknown application {app_id!r}")
    own = session is None
    client = forward.new_session() if session is None else session
    try:
        return await _Checklist(config, conn_cfg, client, now or datetime.now(UTC)).run()
    finally:
        if own:
            await client.close()


class _Checklist:
    def __init__(
        self, config: Config, conn: ConnectionConfig, session: aiohttp.ClientSession, now: datetime
    ) -> None:
        self.config = config
        self.cfg = conn
        self.now = now
        self.timeout = config.server.upstream_timeout
        self.session = session
        # Only this connection's signer / token source: the checked request is signed by the
        # very code the gateway uses.
        single = dataclasses.replace(config, connections={conn.app_id: conn})
        runtime = build_runtime(single, self._token_source)
        self.conn = runtime.connections[conn.app_id]
        self.district: DistrictConfig = self.conn.district
        self.prober = _Prober(self.conn, session, self.timeout)
        self.version = self._versions()[0]
        self.items: dict[str, Item] = {}
        self.students_probe: Probe | None = None

    def _token_source(
        self, district: DistrictConfig, conn: ConnectionConfig, scopes: list[str], timeout: float
    ) -> OAuth2TokenSource:
        session = self.session
        return OAuth2TokenSource(
            district.token_url or "",
            conn.key,
            conn.secret,
            scopes,
            session_factory=lambda: session,
            timeout=timeout,
        )

    def _versions(self) -> list[str]:
        """OneRoster versions to try, most likely first: 1.1 is the OAuth1 generation, 1.2
        the OAuth2 one; a district that serves only the other answers 404 and we move on."""
        preferred = ["v1p1", "v1p2"] if self.district.auth == "oauth1" else ["v1p2", "v1p1"]
        return [v for v in preferred if v in self.district.versions] or preferred

    def path(self, kind: str, *ids: str) -> str:
        template = _PATHS[self.version][kind]
        for value in ids:
            template = template.replace("{}", quote(value, safe=""), 1)
        return f"{template}?limit=1"

    async def run(self) -> Report:
        try:
            self.items["connection_enabled"] = self.connection_enabled()
            self.items["not_expired"] = self.not_expired()
            self.items["infinite_campus_key"] = self.infinite_campus_key()
            reachable, token = await asyncio.gather(
                self.district_reachable(), self.token_endpoint()
            )
            self.items["district_reachable"] = reachable
            self.items["token_endpoint"] = token
            self.items["credentials_accepted"] = await self.credentials_accepted()
            if self.items["credentials_accepted"].status == "ok":
                data, students, vendor = await asyncio.gather(
                    self.data_shared(), self.students_visible(), self.vendor_authorization()
                )
                self.items["data_shared"] = data
                self.items["vendor_authorization"] = vendor
                refused = self.students_probe is not None and self.students_probe.status in (
                    403,
                    404,
                )
                if students.status == "fail" and data.status == "fail" and refused:
                    # data_shared already reports the refusal; it is not judged twice.
                    students = Item(
                        students.name,
                        "skip",
                        "cannot judge: the district refuses students (see data_shared)",
                    )
                self.items["students_visible"] = students
            else:
                why = "cannot judge: credentials_accepted did not pass"
                for name in ("data_shared", "students_visible", "vendor_authorization"):
                    self.items[name] = Item(name, "skip", why)
        finally:
            self.prober.close()
            if self.conn.token_source is not None:
                # Built for this check alone; the session it borrowed is not closed by this.
                await self.conn.token_source.close()
        checks = [self.items[name] for name in CHECKS]
        return Report(self.cfg.app_id, all(i.status != "fail" for i in checks), checks)

    # -- from the config -----------------------------------------------------------------

    def connection_enabled(self) -> Item:
        name = "connection_enabled"
        if self.cfg.enabled:
            return Item(name, "ok", "enabled")
        return _fail(
            name,
            f"connections.{self.cfg.app_id}.enabled = false; the gateway "
            "answers 403 to every request",
        )

    def not_expired(self) -> Item:
        name = "not_expired"
        expires = self.cfg.expires
        if expires is None:
            return Item(name, "ok", "no expiry date set")
        if self.cfg.expired(self.now):
            return _fail(name, f"expired on {expires.isoformat()}; the gateway answers 403")
        left = self.cfg.days_left(self.now)
        if left is not None and left <= EXPIRY_WARNING.days:
            return Item(
                name,
                "ok",
                f"warning: expires in {left} days ({expires.isoformat()}): {HINTS[name]}",
            )
        return Item(name, "ok", f"expires {expires.isoformat()} (in {left} days)")

    def infinite_campus_key(self) -> Item:
        name = "infinite_campus_key"
        named = infinite_campus_vendor_key(self.cfg.key)
        if named is None:
            return Item(name, "skip", "not an InfiniteCampus_<vendorKey>_<GUID> key")
        vendor = self.conn.vendor
        if vendor.vendor_key is None:
            return Item(
                name,
                "skip",
                f"vendors.{vendor.name}.vendor_authorization is not set, "
                "so there is no vendor key to compare",
            )
        if named == vendor.vendor_key:
            return Item(
                name,
                "ok",
                f'the key names vendor key "{named}", as '
                f"vendors.{vendor.name}.vendor_authorization does",
            )
        return _fail(
            name,
            f'the key names vendor key "{named}" but '
            f'vendors.{vendor.name}.vendor_authorization is for "{vendor.vendor_key}"',
        )

    # -- live ----------------------------------------------------------------------------

    async def district_reachable(self) -> Item:
        """Any HTTP answer under ``/ims/oneroster/`` (401 included) means the base URL works;
        a 404 on every version means its path is wrong, a 5xx that the server is down."""
        name = "district_reachable"
        last: Probe | None = None
        for version in self._versions():
            self.version = version
            probe = await self.prober.unsigned(self.path("orgs"))
            last = probe
            if probe.status is None:
                return _fail(name, f"{self.prober.url(probe.path)}: {probe.error}")
            if probe.status >= 500:
                return _fail(
                    name,
                    f"{self.prober.url(probe.path)} answered {probe.status}; "
                    "the district's OneRoster server is down or failing",
                )
            if probe.status != 404:
                return Item(
                    name,
                    "ok",
                    f"{self.district.base_url} answered "
                    f"(HTTP {probe.status} in {probe.elapsed * 1000:.0f} ms)",
                )
        assert last is not None
        self.version = self._versions()[0]
        return _fail(
            name,
            f"{self.prober.url(last.path)} answered 404 (no OneRoster API there; "
            "base_url is everything before /ims/oneroster)",
        )

    async def token_endpoint(self) -> Item:
        name = "token_endpoint"
        source = self.conn.token_source
        if source is None:
            return Item(name, "skip", "oauth1 district: requests are signed, no token endpoint")
        started = time.monotonic()
        try:
            self.prober.token = await source.token()
        except ProxyError as exc:
            return _fail(name, exc.description)  # names the endpoint, never the credentials
        took = (time.monotonic() - started) * 1000
        return Item(name, "ok", f"{self.district.token_url} issued a token ({took:.0f} ms)")

    async def credentials_accepted(self) -> Item:
        name = "credentials_accepted"
        blocked = [
            n for n in ("district_reachable", "token_endpoint") if self.items[n].status == "fail"
        ]
        if blocked:
            return Item(name, "skip", f"cannot judge: {' and '.join(blocked)} did not pass")
        first = self.version
        probe = await self.prober.get(self.path("orgs"))
        if probe.status == 404:
            # The district serves only the other OneRoster version under this base URL.
            for version in self._versions():
                if version != first:
                    self.version = version
                    other = await self.prober.get(self.path("orgs"))
                    if other.status != 404:
                        probe = other
                        break
            else:
                self.version = first
        if probe.status is None:
            return _fail(name, f"signed {probe.says()}")
        if probe.status == 401:
            return _fail(name, f"the district refused the signed request: {probe.says()}")
        if probe.status == 404:
            # Not a credentials problem, but nothing after this can be judged either.
            tried = ", ".join(_VERSION_NAMES[v] for v in self._versions())
            unlisted = [v for v in ("v1p1", "v1p2") if v not in self._versions()]
            hint = (
                f"; it may serve only OneRoster {_VERSION_NAMES[unlisted[0]]}: add it to "
                f"districts.{self.district.name}.versions"
                if unlisted
                else ""
            )
            return Item(
                name,
                "fail",
                f"signed {probe.says()}: the district serves no OneRoster {tried} API under "
                f"its base_url{hint}",
            )
        return Item(name, "ok", f"signed {probe.says()}")

    async def data_shared(self) -> Item:
        name = "data_shared"
        granted = self.cfg.scopes
        verified: list[str] = []
        unverified: list[str] = []
        problems: list[str] = []
        roster_ok = bool(granted & _ROSTER_SCOPES)

        async def a_school() -> tuple[str | None, Probe]:
            probe = await self.prober.get(self.path("schools"))
            records = _records(probe.data) if probe.status == 200 else None
            if records and isinstance(records[0], dict) and records[0].get("sourcedId"):
                return str(records[0]["sourcedId"]), probe
            return None, probe

        async def one(scope: str) -> None:
            school_id: str | None = None
            kind = _SCOPE_PROBE[scope]
            if kind == "school_classes":
                if not roster_ok:
                    return  # no school id to be had; the orgs probe speaks for rostering
                school_id, schools = await a_school()
                if school_id is None:
                    if scope in granted and schools.status == 200:
                        unverified.append(f"{scope} (no school to list classes of)")
                    elif scope in granted:
                        problems.append(f"{scope} is in scopes but {schools.says()}")
                    return
                path = self.path(kind, school_id)
            else:
                path = self.path(kind)
            probe = await self.prober.get(path)
            shown = path.replace(school_id, "{id}") if school_id else path
            if scope in granted:
                if probe.status == 200:
                    verified.append(scope)
                elif scope == GRADEBOOK_READ and probe.status == 401:
                    unverified.append(
                        f"{scope} (gradebook refused with 401: see vendor_authorization)"
                    )
                else:
                    problems.append(f"{scope} is in scopes but {_shown(probe, shown)}")
                return
            # A read scope outside ``scopes``: its endpoint must not be reachable. Endpoints that
            # a granted scope also opens (orgs under roster.readonly) prove nothing.
            if classify(path.partition("?")[0], "GET").scopes & granted:
                return
            if probe.status == 200:
                problems.append(
                    f"the district shares {scope} (GET {shown} answered 200) but scopes lacks it"
                )

        await asyncio.gather(*(one(scope) for scope in _READ_SCOPES))
        writes = [s for s in _WRITE_SCOPES if s in granted]
        if problems:
            return _fail(name, "; ".join(problems))
        parts = []
        if verified:
            parts.append("answer 200: " + ", ".join(s for s in _READ_SCOPES if s in verified))
        unjudged = sorted(unverified)
        if writes:
            unjudged.append(f"{', '.join(writes)} (writes are not probed)")
        if unjudged:
            parts.append("granted, unverified: " + ", ".join(unjudged))
        parts.append("nothing outside scopes is reachable")
        return Item(name, "ok", "; ".join(parts))

    async def students_visible(self) -> Item:
        name = "students_visible"
        if not self.cfg.scopes & _ROSTER_SCOPES:
            return Item(
                name,
                "skip",
                "no rostering scope (roster-core.readonly or roster.readonly) in scopes",
            )
        probe = self.students_probe = await self.prober.get(self.path("students"))
        if probe.status == 200:
            records = _records(probe.data)
            if records is None:
                return _fail(name, f"{probe.says()} but not with a OneRoster users list")
            if records:
                count = f"{probe.total} students" if probe.total is not None else "students"
                return Item(name, "ok", f"{count} visible ({probe.says()})")
            version = "1.1" if self.version == "v1p1" else "1.2"
            return _fail(
                name,
                f"{probe.says()} with no student (OneRoster {version}); "
                "the district may not share students",
            )
        return _fail(name, probe.says())

    async def vendor_authorization(self) -> Item:
        name = "vendor_authorization"
        if not self.cfg.scopes & _GRADEBOOK_SCOPES:
            return Item(name, "skip", "no gradebook scope in scopes")
        probe = await self.prober.get(self.path("lineItems"))
        header = self.conn.vendor_header is not None
        how = "with x-vendor-authorization" if header else "without x-vendor-authorization"
        if probe.status is None:
            return _fail(name, f"{probe.says()} ({how})")
        if probe.status != 401:
            return Item(name, "ok", f"{probe.says()} ({how})")
        vendor, district = self.conn.vendor.name, self.district.name
        if not self.district.vendor_authorization:
            fix = (
                f"districts.{district}.vendor_authorization is false, so none was sent; set it "
                f"to true and vendors.{vendor}.vendor_authorization"
            )
        elif not header:
            fix = f"vendors.{vendor}.vendor_authorization is not set, so none was sent"
        else:
            fix = (
                f"the district refused vendors.{vendor}.vendor_authorization "
                f'(vendor key "{self.conn.vendor.vendor_key}")'
            )
        return _fail(name, f"{probe.says()}; {fix}")


def _shown(probe: Probe, shown_path: str) -> str:
    return probe.says().replace(probe.path, shown_path)


# -- the CLI ---------------------------------------------------------------------------------

_SHOWN = {"ok": "ok", "fail": "FAIL", "skip": "skip"}


def format_report(report: Report) -> str:
    """Human output: one line per item (status, name, detail), then a summary line."""
    width = max(len(name) for name in CHECKS)
    lines = [f"{_SHOWN[i.status]:<5} {i.name:<{width}}  {i.detail}" for i in report.checks]
    counts = {s: sum(1 for i in report.checks if i.status == s) for s in ("ok", "fail", "skip")}
    verdict = "ok" if report.ok else "FAIL"
    lines.append(
        f"{report.app}: {verdict} ({counts['ok']} ok, {counts['fail']} failed, "
        f"{counts['skip']} skipped)"
    )
    return "\n".join(lines)


def check_one_cli(config: Config, app_id: str, as_json: bool = False) -> int:
    """``check APP_ID``: exit 0 if no item fails, 1 if one does, 2 for an unknown appId."""
    if app_id not in config.connections:
        where = f" of {config.source}" if config.source else ""
        print(f'unknown appId "{app_id}" (not in [connections]{where})', file=sys.stderr)
        return 2
    report = asyncio.run(run_check(config, app_id))
    print(json.dumps(report.as_json(), indent=2) if as_json else format_report(report))
    return 0 if report.ok else 1


async def check_all(
    config: Config,
    *,
    concurrency: int = CHECK_ALL_CONCURRENCY,
    on_report: Callable[[Report], None] | None = None,
    now: datetime | None = None,
) -> list[Report]:
    """Every connection, at most ``concurrency`` at once; reports in config order."""
    limit = asyncio.Semaphore(max(1, concurrency))
    session = forward.new_session()

    async def one(app_id: str) -> Report:
        async with limit:
            report = await run_check(config, app_id, session=session, now=now)
        if on_report is not None:
            on_report(report)
        return report

    try:
        return list(await asyncio.gather(*(one(a) for a in config.connections)))
    finally:
        await session.close()


def summary_lines(reports: Sequence[Report]) -> list[str]:
    """``app-7  ok    9/9 ok`` / ``app-9  FAIL  credentials_accepted: ...``, aligned."""
    width = max((len(r.app) for r in reports), default=0)
    return [f"{r.app:<{width}}  {'ok' if r.ok else 'FAIL':<4}  {r.summary()}" for r in reports]


def check_all_cli(config: Config) -> int:
    """``check --all``: one line per connection; exit 1 if any connection has a failing item."""
    reports = asyncio.run(check_all(config))
    for line in summary_lines(reports):
        print(line)
    failing = sum(1 for r in reports if not r.ok)
    print(f"{len(reports)} connections checked, {failing} failing", file=sys.stderr)
    return 1 if failing else 0


__all__ = [
    "CHECKS",
    "HINTS",
    "Item",
    "Report",
    "check_all",
    "check_all_cli",
    "check_one_cli",
    "format_report",
    "run_check",
    "summary_lines",
]
