"""proxy.check.report: the one-line summary of each report that ``check --all`` prints
(docs/checklist.md)."""

from __future__ import annotations

from proxy.check import CHECKS, Item, Report, summary_lines


def test_summary_lines() -> None:
    good = Report(
        "app-7",
        True,
        [Item(n, "ok", "fine") for n in CHECKS[:7]] + [Item(n, "skip", "n/a") for n in CHECKS[7:]],
    )
    bad = Report(
        "app-12",
        False,
        [
            Item("credentials_accepted", "fail", "401: key/secret wrong or expired"),
            Item("data_shared", "fail", "x"),
        ],
    )
    assert summary_lines([good, bad]) == [
        "app-7   ok    7/10 ok, 3 skipped",
        "app-12  FAIL  credentials_accepted: 401: key/secret wrong or expired (+1 more failing)",
    ]
