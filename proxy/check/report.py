"""The checklist's result: items, the report of one connection, and their text forms.

docs/checklist.md: each item is ``ok``, ``fail`` or
``skip`` with a one-line detail; a failing detail ends with the documented hint for that
item. Pure data and text; printing is the CLI's (``proxy.cli.check``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "fail", "skip"]

#: The checklist, in the order the contract lists it (and reports show it).
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
    "not_paused",
)

VERSION_NAMES = {"v1p1": "1.1", "v1p2": "1.2"}
#: the documented "hint on failure" of each item; every failing detail ends with it.
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
    "not_paused": "the district paused syncs until the date shown",
}


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


def fail(name: str, what: str) -> Item:
    """A failing item: what was seen, then the documented hint on what to do."""
    return Item(name, "fail", f"{what}: {HINTS[name]}")


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


def summary_lines(reports: Sequence[Report]) -> list[str]:
    """``app-7  ok    9/9 ok`` / ``app-9  FAIL  credentials_accepted: ...``, aligned."""
    width = max((len(r.app) for r in reports), default=0)
    return [f"{r.app:<{width}}  {'ok' if r.ok else 'FAIL':<4}  {r.summary()}" for r in reports]
