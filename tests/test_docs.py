"""The documentation in ``docs/`` describes everything the code has (docs/README.md: the contract
documented in the project's own ``docs/``, checked against the code).

Each check reads the code's own tables, so a new command, option, config key, route or metric
fails here until ``docs/`` describes it:

* commands and options: the argparse tree of ``proxy.cli`` (and the sandbox's own parser);
* config keys: the validator's schema, section by section;
* routes: the aiohttp routers of the gateway and admin apps, against ``docs/openapi.yaml``
  (itself validated as OpenAPI 3.1 by ``openapi-spec-validator``);
* metrics: the collectors ``proxy.metrics.Metrics`` registers.

The README and ``docs/`` link only inside the repository, and every such link resolves.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from proxy import config as config_mod
from proxy.cli import build_parser
from proxy.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONTRACT_EXAMPLE = DOCS / "configuration.md"
SECTIONS = {
    "server": "server",
    "admin": "admin",
    "store": "store",
    "vendors": "vendor",
    "districts": "district",
    "connections": "connection",
}
# The heading of each schema section in docs/configuration.md.
HEADINGS = {
    "server": "[server]",
    "admin": "[admin]",
    "store": "[store]",
    "vendor": "[vendors.NAME]",
    "district": "[districts.NAME]",
    "connection": "[connections.APP_ID]",
}
HTTP_METHODS = ("get", "head", "put", "post", "delete", "patch", "options")


def example() -> dict:
    return tomllib.loads((ROOT / "config" / "example.toml").read_text())


def sections(text: str, level: str = "## ") -> dict[str, str]:
    """Markdown text by heading (of ``level``): heading line -> body up to the next one."""
    out: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith(level):
            current = line[len(level) :].strip()
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def section_for(docs: dict[str, str], title: str) -> str:
    for heading, body in docs.items():
        if heading.strip("`").split("` ")[0].strip("`") == title:
            return heading + "\n" + body
    raise AssertionError(f"no section for {title!r}")


# -- commands and options ---------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands() -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    from proxy.sandbox.server import build_parser as sandbox_parser

    def walk(path: tuple[str, ...], parser: argparse.ArgumentParser) -> Iterator[Any]:
        subs = _subcommands(parser)
        if not subs or not path:
            yield path, parser
        for name, sub in subs.items():
            # The sandbox is parsed by its own parser (the main one only hands it the rest).
            yield from walk((*path, name), sandbox_parser() if name == "sandbox" else sub)

    yield from walk((), build_parser())


def words(parser: argparse.ArgumentParser) -> list[str]:
    """What a reader must find documented: each option's long spelling and each positional's
    metavar (``VENDOR``, ``APP_ID``)."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS or action.nargs == argparse.REMAINDER:
            continue
        if action.option_strings:
            out.append(max(action.option_strings, key=len))
        else:
            out.append(str(action.metavar or action.dest).upper())
    return out


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=lambda p: " ".join(p) or "-")
def test_every_command_and_option_is_documented(path: tuple[str, ...]) -> None:
    parser = dict(commands())[path]
    docs = sections((DOCS / "commands.md").read_text())
    title = " ".join(("oneroster-proxy", *path))
    body = section_for(docs, title)
    for word in words(parser):
        assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", body), (
            f"docs/commands.md, section `{title}`, does not describe {word}"
        )


def test_readme_names_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in _subcommands(build_parser()):
        assert f"oneroster-proxy {name}" in readme, f"README does not show `{name}`"


# -- config keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(HEADINGS))
def test_every_config_key_is_documented(kind: str) -> None:
    docs = sections((DOCS / "configuration.md").read_text())
    body = section_for(docs, HEADINGS[kind])
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", body, re.M))
    accepted = config_mod.SCHEMA[kind]
    assert accepted - documented == set(), f"docs/configuration.md {HEADINGS[kind]} lacks keys"
    assert documented - accepted == set(), f"docs/configuration.md {HEADINGS[kind]}: unknown keys"


@pytest.mark.parametrize("top", sorted(SECTIONS))
def test_example_config_shows_every_accepted_key(top: str) -> None:
    doc = example()
    schema = config_mod.SCHEMA[SECTIONS[top]]
    section = doc[top]
    if top in ("vendors", "districts", "connections"):
        shown = set().union(*(set(table) for table in section.values()))
    else:
        shown = set(section)
    assert schema - shown == set(), f"[{top}] keys missing from config/example.toml"
    assert shown - schema == set(), f"[{top}] keys the validator would refuse"


def test_documented_config_block_is_accepted_key_for_key() -> None:
    block = re.search(r"```toml\n(.*?)```", CONTRACT_EXAMPLE.read_text(), re.S)
    assert block is not None
    doc = tomllib.loads(block.group(1))
    for top, kind in SECTIONS.items():
        tables = doc.get(top, {})
        keys = (
            set().union(*(set(t) for t in tables.values()))
            if top in ("vendors", "districts", "connections")
            else set(tables)
        )
        assert keys <= config_mod.SCHEMA[kind], f"documented [{top}] keys refused"
    # And the block as a whole loads (warnings allowed), its ${NAME}s set.
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block.group(1))
    config_mod.validate(doc, {name: f"{name.lower()}-0123456789abcdef0123" for name in names})


# -- HTTP routes ------------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    return yaml.safe_load((DOCS / "openapi.yaml").read_text())


def test_openapi_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    spec = openapi()
    assert spec["openapi"].startswith("3.1")
    validate(spec, cls=OpenAPIV31SpecValidator)


def _template(path: str) -> str:
    """``/admin/connections/{app_id}`` and ``.../{appId}`` alike: ``/admin/connections/{}``."""
    return re.sub(r"\{[^}]*\}", "{}", path)


# aiohttp catch-all routes and the documented paths they serve.
CATCH_ALL = {"/{}": "/{}/ims/oneroster/{}"}


def _routes(app: web.Application, prefix: str = "") -> Iterator[tuple[str, str]]:
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        if isinstance(sub, web.Application):  # add_subapp: its routes under the prefix
            yield from _routes(sub, prefix + resource.canonical)
            continue
        for route in resource:
            yield route.method, prefix + resource.canonical


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    from proxy.admin.listener import create_admin_app
    from proxy.app import create_app
    from proxy.store import open_store

    raw = {
        "admin": {"token": "admin-token-for-docs-test-0123"},
        "store": {"url": f"sqlite://{tmp_path}/store.db"},
    }
    config = config_mod.validate(raw, {})
    gateway = create_app(config, open_store(config.store.url))
    out = set()
    for app in (gateway, create_admin_app(gateway)):
        for method, path in _routes(app):
            if method == "HEAD" and (("GET", path) in out or ("GET", path) in set(_routes(app))):
                continue  # aiohttp's implicit HEAD beside every add_get
            out.add((method, path))
    return out


def test_every_route_is_in_the_openapi_document(tmp_path: Path) -> None:
    spec_paths = {_template(p): item for p, item in openapi()["paths"].items()}
    missing = []
    for method, path in sorted(served_routes(tmp_path)):
        documented = CATCH_ALL.get(_template(path), _template(path))
        item = spec_paths.get(documented, {})
        methods = [m for m in HTTP_METHODS if m in item]
        if method == "*" and methods:
            continue
        if method.lower() not in methods:
            missing.append(f"{method} {path}")
    assert missing == [], f"routes missing from docs/openapi.yaml: {missing}"


def test_every_documented_route_is_served(tmp_path: Path) -> None:
    served = {(m, _template(p)) for m, p in served_routes(tmp_path)}
    catch_all = {CATCH_ALL[p] for m, p in served if m == "*" and p in CATCH_ALL}
    for path, item in openapi()["paths"].items():
        for method in HTTP_METHODS:
            if method not in item or _template(path) in catch_all:
                continue
            assert (method.upper(), _template(path)) in served or (
                method == "head" and ("GET", _template(path)) in served
            ), f"docs/openapi.yaml documents {method.upper()} {path}, which nothing serves"


# -- metrics ----------------------------------------------------------------------------------


def registered_metrics() -> set[str]:
    return {m.name for m in Metrics().registry.collect()}


@pytest.mark.parametrize("name", sorted(registered_metrics()))
def test_every_metric_is_documented(name: str) -> None:
    text = (DOCS / "metrics.md").read_text()
    assert f"`{name}`" in text or f"`{name}_total`" in text, f"docs/metrics.md lacks {name}"


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
    registered = registered_metrics() | {f"{n}_total" for n in registered_metrics()}
    for name in names:
        assert f"oneroster_proxy_{name}" in registered, name


# -- links ------------------------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        assert "://" not in target and not target.startswith("//"), (
            f"{page.name} links outside the repository: {target}"
        )
        path = target.split("#", 1)[0]
        if not path:
            continue
        resolved = (page.parent / path).resolve()
        assert resolved.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        assert resolved.exists(), f"{page.name}: broken link {target}"


def test_checklist_names_every_check() -> None:
    from proxy.check import CHECKS

    text = (DOCS / "checklist.md").read_text()
    for name in CHECKS:
        assert f"| `{name}` |" in text, f"docs/checklist.md lacks {name}"


def _layout_entries(page: str) -> list[list[str]]:
    """docs/layout.md's module lines as entries: the words of a line indented four spaces and
    of the deeper-indented lines that continue it."""
    entries: list[list[str]] = []
    for line in page.splitlines():
        if line.startswith("     ") and entries:
            entries[-1] += re.findall(r"[\w*./]+", line)
        elif line.startswith("    ") and line.strip():
            entries.append(re.findall(r"[\w*./]+", line))
    return entries


def test_the_layout_page_names_every_module() -> None:
    # docs/layout.md is where a contributor looks for a module's job: a module added without
    # its line there is one a newcomer cannot place. A top-level module is named as
    # ``name.py``; a package's module by its stem on the package's own entry (``store/ ...
    # sqlite*.py`` covers store/sqlite_tokens.py); a package's __init__/__main__ need no line.
    entries = _layout_entries((ROOT / "docs" / "layout.md").read_text())
    top = {word for entry in entries for word in entry}
    packages = {entry[0].rstrip("/"): entry[1:] for entry in entries if entry[0].endswith("/")}

    def named(path: Path) -> bool:
        parts = path.relative_to(ROOT / "proxy").parts
        if len(parts) == 1:
            return any(w.rstrip(",") == path.name for w in top)
        words = [w.strip(",()") for w in packages.get(parts[0], [])]
        return any(
            w.removesuffix(".py") == path.stem
            or (w.endswith("*.py") and path.stem.startswith(w.removesuffix("*.py")))
            for w in words
        )

    missing = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "proxy").rglob("*.py"))
        if path.stem not in ("__init__", "__main__") and not named(path)
    ]
    assert missing == []
