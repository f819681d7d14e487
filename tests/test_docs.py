"""Every setting and every command is documented where an operator looks for it.

The example config (``config/example.toml``) must show every key the validator accepts, and
SPEC.md's keys must all be accepted; the README must name every CLI command; every metric
SPEC.md lists must exist.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from proxy import config as config_mod
from proxy.cli import build_parser
from proxy.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "SPEC.md"
SECTIONS = {
    "server": "server",
    "admin": "admin",
    "store": "store",
    "vendors": "vendor",
    "districts": "district",
    "connections": "connection",
}


def example() -> dict:
    return tomllib.loads((ROOT / "config" / "example.toml").read_text())


@pytest.mark.parametrize("top", sorted(SECTIONS))
def test_example_config_shows_every_accepted_key(top: str) -> None:
    doc = example()
    schema = config_mod._SCHEMA[SECTIONS[top]]
    section = doc[top]
    if top in ("vendors", "districts", "connections"):
        shown = set().union(*(set(table) for table in section.values()))
    else:
        shown = set(section)
    assert schema - shown == set(), f"[{top}] keys missing from config/example.toml"
    assert shown - schema == set(), f"[{top}] keys the validator would refuse"


def test_spec_config_block_is_accepted_key_for_key() -> None:
    if not SPEC.exists():
        pytest.skip("SPEC.md is not beside the repository")
    block = re.search(r"```toml\n(.*?)```", SPEC.read_text(), re.S)
    assert block is not None
    doc = tomllib.loads(block.group(1))
    for top, kind in SECTIONS.items():
        tables = doc.get(top, {})
        keys = (
            set().union(*(set(t) for t in tables.values()))
            if top in ("vendors", "districts", "connections")
            else set(tables)
        )
        assert keys <= config_mod._SCHEMA[kind], f"SPEC's [{top}] keys not accepted"


def test_readme_names_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    for name in commands:
        assert f"oneroster-proxy {name}" in readme, f"README does not show `{name}`"


def test_every_spec_metric_exists() -> None:
    names = {
        "requests_total",
        "request_duration_seconds",
        "upstream_duration_seconds",
        "upstream_errors_total",
        "upstream_token_fetches_total",
        "inflight_requests",
        "response_bytes_total",
        "tokens_active",
        "config_reloads_total",
    }
    registered = {m.name for m in Metrics().registry.collect()} | {
        f"{m.name}_total" for m in Metrics().registry.collect()
    }
    for name in names:
        assert f"oneroster_proxy_{name}" in registered, name
