"""The checklist of one connection, in the documented order: the live items, judged from probes.

The items judged from the config alone are ``proxy.check.config_items``'s.

Probes that do not depend on each other run concurrently, so a hanging district costs one
``upstream_timeout``; an item that cannot be judged because an earlier one failed is ``skip``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime
from urllib.parse import quote

import aiohttp

from proxy.check.config_items import (
    connection_enabled,
    infinite_campus_key,
    not_expired,
    not_paused,
)
from proxy.check.probes import (
    GRADEBOOK_SCOPES,
    PATHS,
    READ_SCOPES,
    ROSTER_SCOPES,
    SCOPE_PROBE,
    WRITE_SCOPES,
    Probe,
    Prober,
    collection_records,
)
from proxy.check.report import CHECKS, VERSION_NAMES, Item, Report, fail
from proxy.config import Config, ConnectionConfig, DistrictConfig
from proxy.errors import ProxyError
from proxy.gateway.runtime import build_runtime
from proxy.scopes import GRADEBOOK_READ, classify
from proxy.signing.oauth2 import OAuth2TokenSource


class Checklist:
    """The items of one connection, judged in the documented order; ``run`` returns the report."""

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
        self.prober = Prober(self.conn, session, self.timeout)
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
        template = PATHS[self.version][kind]
        for value in ids:
            template = template.replace("{}", quote(value, safe=""), 1)
        return f"{template}?limit=1"

    async def run(self) -> Report:
        try:
            self.items["connection_enabled"] = connection_enabled(self.cfg)
            self.items["not_expired"] = not_expired(self.cfg, self.now)
            self.items["infinite_campus_key"] = infinite_campus_key(self.cfg, self.conn.vendor)
            self.items["not_paused"] = not_paused(self.district, self.now)
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
                return fail(name, f"{self.prober.url(probe.path)}: {probe.error}")
            if probe.status >= 500:
                return fail(
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
        return fail(
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
            return fail(name, exc.description)  # names the endpoint, never the credentials
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
            return fail(name, f"signed {probe.says()}")
        if probe.status == 401:
            return fail(name, f"the district refused the signed request: {probe.says()}")
        if probe.status == 404:
            # Not a credentials problem, but nothing after this can be judged either.
            tried = ", ".join(VERSION_NAMES[v] for v in self._versions())
            unlisted = [v for v in ("v1p1", "v1p2") if v not in self._versions()]
            hint = (
                f"; it may serve only OneRoster {VERSION_NAMES[unlisted[0]]}: add it to "
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
        beyond: list[str] = []  # read scopes the district shares beyond ``scopes``
        roster_ok = bool(granted & ROSTER_SCOPES)

        async def a_school() -> tuple[str | None, Probe]:
            probe = await self.prober.get(self.path("schools"))
            records = collection_records(probe.data) if probe.status == 200 else None
            if records and isinstance(records[0], dict) and records[0].get("sourcedId"):
                return str(records[0]["sourcedId"]), probe
            return None, probe

        async def one(scope: str) -> None:
            school_id: str | None = None
            kind = SCOPE_PROBE[scope]
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
                # Not a failure: the gateway refuses paths outside ``scopes`` whatever the
                # district would answer, so the connection works; the operator may still
                # want to narrow the district's "Data to Share" (or widen ``scopes``).
                beyond.append(f"{scope} (GET {shown} answered 200)")

        await asyncio.gather(*(one(scope) for scope in READ_SCOPES))
        writes = [s for s in WRITE_SCOPES if s in granted]
        if problems:
            return fail(name, "; ".join(problems))
        parts = []
        if beyond:
            parts.append(
                "warning: the district shares more than scopes: "
                + ", ".join(sorted(beyond))
                + "; the proxy refuses those paths (narrow the district's Data to Share, "
                "or add them to scopes if the vendor needs them)"
            )
        if verified:
            parts.append("answer 200: " + ", ".join(s for s in READ_SCOPES if s in verified))
        unjudged = sorted(unverified)
        if writes:
            unjudged.append(f"{', '.join(writes)} (writes are not probed)")
        if unjudged:
            parts.append("granted, unverified: " + ", ".join(unjudged))
        if not beyond:
            parts.append("nothing outside scopes is reachable")
        return Item(name, "ok", "; ".join(parts))

    async def students_visible(self) -> Item:
        name = "students_visible"
        if not self.cfg.scopes & ROSTER_SCOPES:
            return Item(
                name,
                "skip",
                "no rostering scope (roster-core.readonly or roster.readonly) in scopes",
            )
        probe = self.students_probe = await self.prober.get(self.path("students"))
        if probe.status == 200:
            records = collection_records(probe.data)
            if records is None:
                return fail(name, f"{probe.says()} but not with a OneRoster users list")
            if records:
                count = f"{probe.total} students" if probe.total is not None else "students"
                return Item(name, "ok", f"{count} visible ({probe.says()})")
            version = "1.1" if self.version == "v1p1" else "1.2"
            return fail(
                name,
                f"{probe.says()} with no student (OneRoster {version}); "
                "the district may not share students",
            )
        return fail(name, probe.says())

    async def vendor_authorization(self) -> Item:
        name = "vendor_authorization"
        if not self.cfg.scopes & GRADEBOOK_SCOPES:
            return Item(name, "skip", "no gradebook scope in scopes")
        probe = await self.prober.get(self.path("lineItems"))
        header = self.conn.vendor_header is not None
        how = "with x-vendor-authorization" if header else "without x-vendor-authorization"
        if probe.status is None:
            return fail(name, f"{probe.says()} ({how})")
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
        return fail(name, f"{probe.says()}; {fix}")


def _shown(probe: Probe, shown_path: str) -> str:
    return probe.says().replace(probe.path, shown_path)
