"""The tables and the PASS/MISS lines of ``bench/targets.py``: medians over the rounds with
min-max, ratios against the bare forwarder or the district itself."""

from __future__ import annotations

import argparse
import statistics
from typing import Any


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "-"
    text = fmt.format(med(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
    return text


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
    )


def report(
    args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], extra: dict[str, Any]
) -> list[tuple[str, bool]]:
    def col(item: str, key: str) -> list[float]:
        return [run[key] for run in runs.get(item, [])]

    def m(item: str, key: str) -> float:
        return med(col(item, key))

    for page in ("small", "big", "users1mb"):
        rows = []
        for item in [i for i in runs if i.startswith(page + " ")]:
            base = m(f"{page} bare", "rps")
            rows.append(
                [
                    item.partition(" ")[2],
                    spread(col(item, "rps")),
                    f"{m(item, 'rps') / base:.2f}x" if base == base else "-",
                    spread(col(item, "p50_ms"), "{:.2f}"),
                    spread(col(item, "p99_ms"), "{:.2f}"),
                    spread(col(item, "cpu_us")),
                    f"{sum(col(item, 'errors')):.0f}",
                ]
            )
        if rows:
            title = {
                "small": "small page (2,381 B)",
                "big": "1 MB page (951,011 B)",
                "users1mb": "1 MB of 1.1 users with passwords (the sharing policy)",
            }[page]
            print(f"\n{title}, wrk -t1 -c{args.connections}: median (min-max) of the rounds")
            head = ["target", "req/s", "x bare", "p50 ms", "p99 ms", "CPU µs/req", "errors"]
            print(table(head, rows))
    rows = []
    for item in ("rate direct", "rate proxy", "rate bare", "rate bare-uvloop", "rate nginx"):
        if item in runs:
            rows.append(
                [
                    item.partition(" ")[2],
                    spread(col(item, "p50_ms"), "{:.3f}"),
                    spread(col(item, "p99_ms"), "{:.3f}"),
                    spread(col(item, "max_ms"), "{:.2f}"),
                    f"{sum(col(item, 'late')):.0f}",
                    f"{sum(col(item, 'errors')):.0f}",
                ]
            )
    if rows:
        print(f"\n{args.rate:g} req/s constant rate, small page (rate_client.py)")
        print(table(["target", "p50 ms", "p99 ms", "max ms", "late", "errors"], rows))
    rows = []
    for item in ("slow direct", "slow proxy", "slow bare-uvloop"):
        if item in runs:
            rows.append(
                [
                    item.partition(" ")[2],
                    spread(col(item, "rps")),
                    spread(col(item, "p50_ms"), "{:.1f}"),
                    spread(col(item, "p99_ms"), "{:.1f}"),
                    f"{sum(col(item, 'errors')):.0f}",
                ]
            )
    if rows:
        print(
            "\nslow district (500 ms per answer, max_connections = 400), "
            f"wrk -t1 -c400 -d{args.slow_duration}s"
        )
        print(table(["target", "req/s", "p50 ms", "p99 ms", "errors"], rows))
    for name in ("proxy", "bare"):
        s = extra.get(f"stream_{name}")
        if s:
            print(
                f"\n{name}: {args.stream_mb} MB streamed to a slow reader "
                f"({args.stream_rate:g} MB/s): RSS {s['idle_mb']:.1f} -> {s['peak_mb']:.1f} MiB, "
                f"growth {s['growth_mib']:+.1f} MiB" + ("" if s["ok"] else " (stream FAILED)")
            )
    verdicts: list[tuple[str, bool]] = []
    if "small proxy" in runs and "small bare" in runs:
        ratio = m("small proxy", "rps") / m("small bare", "rps")
        p99 = m("small proxy", "p99_ms") / m("small bare", "p99_ms")
        verdicts.append((f"(1) small page req/s >= 0.85x bare ({ratio:.2f}x)", ratio >= 0.85))
        verdicts.append((f"(1) small page p99 <= 1.3x bare ({p99:.2f}x)", p99 <= 1.3))
        if "small bare-uvloop" in runs:
            uv = m("small proxy", "rps") / m("small bare-uvloop", "rps")
            need = extra.get("proxy_loop") == "uvloop"
            verdicts.append(
                (
                    f"(1) small page req/s >= 0.85x bare on uvloop ({uv:.2f}x; "
                    f"{'required' if need else 'not required'}: the proxy runs on "
                    f"{extra.get('proxy_loop')})",
                    uv >= 0.85 or not need,
                )
            )
    if "big proxy" in runs and "big bare" in runs:
        ratio = m("big proxy", "rps") / m("big bare", "rps")
        verdicts.append((f"(2) 1 MB page req/s >= 0.95x bare ({ratio:.2f}x)", ratio >= 0.95))
    if "stream_proxy" in extra:
        growth = extra["stream_proxy"]["growth_mib"]
        verdicts.append(
            (f"(2) RSS growth over the stream <= 16 MiB ({growth:+.1f} MiB)", growth <= 16)
        )
    if "rate proxy" in runs and "rate direct" in runs:
        p50 = m("rate proxy", "p50_ms") - m("rate direct", "p50_ms")
        p99 = m("rate proxy", "p99_ms") - m("rate direct", "p99_ms")
        verdicts.append(
            (
                f"(3) at {args.rate:g} req/s the proxy adds <= 0.3 ms to p50 ({p50:+.3f} ms)",
                p50 <= 0.3,
            )
        )
        verdicts.append(
            (
                f"(3) at {args.rate:g} req/s the proxy adds <= 1 ms to p99 ({p99:+.3f} ms)",
                p99 <= 1.0,
            )
        )
    if "slow proxy" in runs and "slow direct" in runs:
        ratio = m("slow proxy", "rps") / m("slow direct", "rps")
        p99 = m("slow proxy", "p99_ms") - m("slow direct", "p99_ms")
        verdicts.append((f"(4) slow district req/s >= 0.97x direct ({ratio:.3f}x)", ratio >= 0.97))
        verdicts.append((f"(4) slow district p99 <= direct + 50 ms ({p99:+.1f} ms)", p99 <= 50))
    if "small proxy" in runs and "small bare" in runs:
        ratio = m("small proxy", "rps") / m("small bare", "rps")
        verdicts.append(
            (f"(6) small page with the sharing policy >= 0.90x bare ({ratio:.2f}x)", ratio >= 0.9)
        )
    if "users1mb proxy" in runs and "users1mb proxy scanner-off" in runs:
        ratio = m("users1mb proxy", "rps") / m("users1mb proxy scanner-off", "rps")
        verdicts.append(
            (
                f"(6) 1 MB users page, password dropped >= 0.60x scanner off ({ratio:.2f}x)",
                ratio >= 0.6,
            )
        )
    if "small proxy --workers 2" in runs and "small proxy" in runs:
        ratio = m("small proxy --workers 2", "rps") / m("small proxy", "rps")
        verdicts.append((f"(5) --workers 2 >= 1.7x one worker ({ratio:.2f}x)", ratio >= 1.7))
    print()
    for text, ok in verdicts:
        print(f"  {'PASS' if ok else 'MISS'}  {text}")
    return verdicts
