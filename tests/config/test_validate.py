"""Config validation (docs/configuration.md) and ``oneroster-proxy config validate``.

``validate`` must report every problem at once, one line each, naming the key path; unknown keys
are errors (with a did-you-mean); ``${ENV}`` is interpolated in every string and a missing
variable names its key; warnings (expiry within 30 days, plain HTTP) never fail validation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy import config as config_mod
from proxy.cli import main
from proxy.config import (
    ConfigError,
    Listen,
    Rate,
    infinite_campus_vendor_key,
    load,
    validate,
)
from tests.support import toml_dumps

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
REPO = str(Path(__file__).resolve().parents[2])


def minimal(**connection: Any) -> dict[str, Any]:
    return {
        "vendors": {"acme": {}},
        "districts": {"springfield": {"base_url": "https://sis.springfield.example/api"}},
        "connections": {
            "app-7": {
                "vendor": "acme",
                "district": "springfield",
                "key": "k",
                "secret": "s",
                "scopes": ["roster-core.readonly"],
                **connection,
            }
        },
    }


def problems(doc: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(doc, env or {}, now=NOW)
    return info.value.problems


# -- a valid config and its defaults ------------------------------------------------------------


def test_minimal_config_and_defaults() -> None:
    config = validate(minimal(), {}, now=NOW)
    assert config.server.listen == Listen("0.0.0.0", 8080)
    assert config.server.upstream_timeout == 30.0
    assert config.server.max_body == 64 * 1000**2
    # Defaults of sections left out are values, not dataclass slot descriptors.
    assert config.admin.listen == Listen("127.0.0.1", 9090)
    assert config.admin.token is None
    assert config.store.url == "sqlite:///var/lib/oneroster-proxy/store.db"
    assert config.store.cache_ttl == 2.0
    district = config.districts["springfield"]
    assert district.versions == ("v1p1", "v1p2")
    assert district.auth == "oauth1" and district.signature_method == "HMAC-SHA256"
    assert district.upstream_prefix == "https://sis.springfield.example/api/ims/oneroster/"
    conn = config.connections["app-7"]
    assert conn.scopes == frozenset({"roster-core.readonly"})
    assert conn.enabled is True and conn.expires is None
    assert config.warnings == ()


def test_spec_example_validates() -> None:
    doc = {
        "server": {
            "listen": "0.0.0.0:8080", "public_url": "https://proxy.example",
            "upstream_timeout": "30s", "drain_timeout": "30s", "max_body": "64MB",
            "trust_forwarded": False, "jwt_keys": ["${ORP_JWT_KEY}"],
        },
        "admin": {"listen": "127.0.0.1:9090", "token": "${ORP_ADMIN_TOKEN}"},
        "store": {"url": "sqlite:///var/lib/oneroster-proxy/store.db", "cache_ttl": "2s"},
        "vendors": {"acme": {
            "client_secret": "${ACME_CLIENT_SECRET}",
            "vendor_authorization": "AwesomeLMS:F24F...", "rate_limit": "1200/m",
        }},
        "districts": {"springfield": {
            "base_url": "https://springfield.example/campus/api/oneroster/v1p2/acme",
            "auth": "oauth1", "signature_method": "HMAC-SHA256", "vendor_authorization": True,
            "max_connections": 20, "max_wait": "10s", "rate_limit": "600/m",
        }},
        "connections": {"app-7": {
            "vendor": "acme", "district": "springfield", "key": "${SPRINGFIELD_KEY}",
            "secret": "${SPRINGFIELD_SECRET}",
            "scopes": ["roster-core.readonly", "gradebook.readonly"], "enabled": True,
            "expires": dt.date(2027, 6, 30),
        }},
    }  # fmt: skip
    env = {
        "ORP_JWT_KEY": "k" * 40, "ORP_ADMIN_TOKEN": "a" * 32, "ACME_CLIENT_SECRET": "c" * 40,
        "SPRINGFIELD_KEY": "the-key", "SPRINGFIELD_SECRET": "the+secret/=",
    }  # fmt: skip
    config = validate(doc, env, now=NOW)
    assert config.server.jwt_keys == ("k" * 40,)
    assert config.admin.token == "a" * 32
    assert config.vendors["acme"].vendor_key == "AwesomeLMS"
    assert config.vendors["acme"].rate_limit == Rate(1200, 60)
    assert config.districts["springfield"].max_connections == 20
    conn = config.connections["app-7"]
    assert (conn.key, conn.secret) == ("the-key", "the+secret/=")
    assert conn.expires == dt.date(2027, 6, 30)


# -- every problem at once, one line each, with its key path -----------------------------------


def test_every_problem_at_once_with_key_paths() -> None:
    doc = {
        "sever": {},
        "server": {"lisen": "0.0.0.0:1", "upstream_timeout": "30 seconds", "max_body": "64 MiBs",
                   "drain_timeout": 5, "listen": "nohost"},
        "admin": {"token": "short"},
        "store": {"url": "postgres://db/x", "cache_ttl": "2x"},
        "vendors": {"acme": {"rate_limit": "1200/minute", "vendor_authorization": "nocolon",
                             "clientsecret": "x"}},
        "districts": {"d": {"base_url": "ftp://x", "auth": "oauth3", "signature_method": "RSA-SHA1",
                            "max_connections": 0, "versions": ["1.3"], "rate_limit": "5/d"}},
        "connections": {
            "app-7": {"vendor": "acme2", "district": "d2", "key": "${KEY}", "secret": "s",
                      "scopes": ["roster.readonly", "gradebook.write", 3],
                      "expires": "2027-13-01", "enabled": "yes"},
            "app-8": {"vendor": "acme", "district": "d"},
        },
    }  # fmt: skip
    assert problems(doc) == [
        'sever: unknown key (did you mean "server"?)',
        'server.lisen: unknown key (did you mean "listen"?)',
        'server.listen: invalid listen address "nohost" (write host:port)',
        'server.upstream_timeout: invalid duration "30 seconds" (write e.g. 30s, 15m, 24h, 7d)',
        'server.drain_timeout: invalid duration "5" (write e.g. 30s, 15m, 24h, 7d)',
        'server.max_body: invalid size "64 MiBs" (write e.g. 64MB, 512KB)',
        "admin.token: must be at least 16 characters",
        'store.url: unsupported store "postgres" (use sqlite:///path, redis://host:6379/0 or '
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB])",
        'store.cache_ttl: invalid duration "2x" (write e.g. 30s, 15m, 24h, 7d)',
        'vendors.acme.clientsecret: unknown key (did you mean "client_secret"?)',
        "vendors.acme.vendor_authorization: must be key:secret",
        'vendors.acme.rate_limit: invalid rate "1200/minute" (write e.g. 20/s, 1200/m)',
        'districts.d.base_url: invalid URL "ftp://x" (expected http or https://host/...)',
        'districts.d.auth: must be "oauth1" or "oauth2", not "oauth3"',
        'districts.d.signature_method: must be "HMAC-SHA256" or "HMAC-SHA1", not "RSA-SHA1"',
        'districts.d.versions[0]: unknown OneRoster version "1.3"',
        "districts.d.max_connections: must be an integer >= 1",
        'districts.d.rate_limit: invalid rate "5/d" (write e.g. 20/s, 1200/m)',
        'connections.app-7.vendor: no vendor "acme2" in [vendors]',
        'connections.app-7.district: no district "d2" in [districts]',
        'connections.app-7.scopes[1]: unknown scope "gradebook.write"',
        'connections.app-7.scopes[2]: unknown scope "3"',
        'connections.app-7.expires: invalid date "2027-13-01" (write e.g. 2027-06-30)',
        "connections.app-7.key: environment variable KEY is not set",
        "connections.app-7.enabled: must be true or false",
        "connections.app-8.scopes: required (the district's Data to Share)",
        "connections.app-8.key: required",
        "connections.app-8.secret: required",
    ]


def test_spec_scope_error_line() -> None:
    doc = minimal(scopes=["roster.readonly", "gradebook.write"])
    assert problems(doc) == ['connections.app-7.scopes[1]: unknown scope "gradebook.write"']


def test_unknown_keys_everywhere_with_and_without_a_hint() -> None:
    doc = minimal(scope=["roster.readonly"], colour="blue")
    doc["connection"] = {}
    doc["districts"]["springfield"]["base_urll"] = "x"
    doc["districts"]["springfield"]["vendor_authorisation"] = True
    assert problems(doc) == [
        'connection: unknown key (did you mean "connections"?)',
        'districts.springfield.base_urll: unknown key (did you mean "base_url"?)',
        "districts.springfield.vendor_authorisation: unknown key "
        '(did you mean "vendor_authorization"?)',
        'connections.app-7.scope: unknown key (did you mean "scopes"?)',
        "connections.app-7.colour: unknown key",
    ]


def test_dangling_references() -> None:
    doc = minimal(vendor="acme-corp", district="shelbyville")
    assert problems(doc) == [
        'connections.app-7.vendor: no vendor "acme-corp" in [vendors]',
        'connections.app-7.district: no district "shelbyville" in [districts]',
    ]
    doc = minimal()
    del doc["vendors"], doc["districts"]
    assert problems(doc) == [
        'connections.app-7.vendor: no vendor "acme" in [vendors]',
        'connections.app-7.district: no district "springfield" in [districts]',
    ]


def test_tables_of_the_wrong_shape() -> None:
    doc = minimal()
    doc["vendors"] = ["acme"]
    doc["districts"]["springfield"] = "https://x.example"
    assert problems(doc) == [
        "vendors: must be a table of tables",
        "districts.springfield: must be a table",
        "districts.springfield.base_url: required",
        'connections.app-7.vendor: no vendor "acme" in [vendors]',
    ]


def test_district_rules() -> None:
    doc = minimal()
    doc["districts"]["springfield"] = {
        "base_url": "https://x.example/api/ims/oneroster",
        "auth": "oauth2",
    }
    doc["districts"]["shelbyville"] = {
        "base_url": "https://y.example?x=1",
        "token_url": "https://y.example/token",
    }
    assert problems(doc) == [
        "districts.springfield.base_url: give everything before /ims/oneroster, not the API path",
        'districts.springfield.token_url: required with auth = "oauth2"',
        "districts.shelbyville.base_url: must not contain a query or fragment",
    ]
    # token_url beside oauth1 (as docs/'s example has it) loads, with a warning.
    del doc["districts"]["springfield"]
    doc["districts"]["shelbyville"]["base_url"] = "https://y.example"
    doc["connections"]["app-7"]["district"] = "shelbyville"
    loaded = validate(doc, {}, now=NOW)
    assert loaded.districts["shelbyville"].auth == "oauth1"
    assert 'districts.shelbyville.token_url: ignored, only used with auth = "oauth2"' in (
        loaded.warnings
    )


def test_versions_accept_both_spellings() -> None:
    doc = minimal()
    doc["districts"]["springfield"]["versions"] = ["1.1"]
    assert validate(doc, {}, now=NOW).districts["springfield"].versions == ("v1p1",)
    doc["districts"]["springfield"]["versions"] = ["v1p2", "1.1", "1.2"]
    assert validate(doc, {}, now=NOW).districts["springfield"].versions == ("v1p2", "v1p1")
    doc["districts"]["springfield"]["versions"] = []
    assert problems(doc) == [
        'districts.springfield.versions: must be a non-empty list such as ["1.1", "1.2"]'
    ]


def test_server_values_must_be_positive_and_sized() -> None:
    doc = minimal()
    doc["server"] = {"upstream_timeout": "0s", "max_line": 10, "jwt_keys": ["short"]}
    assert problems(doc) == [
        "server.jwt_keys[0]: must be at least 32 bytes (HS256 key)",
        "server.max_line: must be an integer >= 256",
        "server.upstream_timeout: must be greater than zero",
    ]


def test_client_secret_needs_jwt_keys() -> None:
    doc = minimal()
    doc["vendors"]["acme"]["client_secret"] = "a-long-enough-client-secret-0123456789"
    assert problems(doc) == ["vendors.acme.client_secret: needs server.jwt_keys to sign JWTs"]


# -- ${ENV} interpolation -----------------------------------------------------------------------


def test_env_interpolation_in_every_string() -> None:
    doc = minimal(key="${KEY}", secret="pre-${A}-${B}-post")
    doc["districts"]["springfield"]["base_url"] = "https://${HOST}/api"
    doc["server"] = {"upstream_timeout": "${TIMEOUT}", "jwt_keys": ["${JWT}"]}
    env = {"KEY": "k1", "A": "x", "B": "y", "HOST": "sis.example", "TIMEOUT": "5s", "JWT": "j" * 32}
    config = validate(doc, env, now=NOW)
    assert config.connections["app-7"].key == "k1"
    assert config.connections["app-7"].secret == "pre-x-y-post"
    assert config.districts["springfield"].base_url == "https://sis.example/api"
    assert config.server.upstream_timeout == 5.0
    assert config.server.jwt_keys == ("j" * 32,)


def test_missing_env_variables_name_their_keys() -> None:
    doc = minimal(key="${KEY}", secret="${A}${B}")
    doc["server"] = {"jwt_keys": ["j" * 32, "${JWT2}"]}
    doc["admin"] = {"token": "${ADMIN}"}
    assert problems(doc, {"A": "x"}) == [
        "server.jwt_keys[1]: environment variable JWT2 is not set",
        "admin.token: environment variable ADMIN is not set",
        "connections.app-7.key: environment variable KEY is not set",
        "connections.app-7.secret: environment variable B is not set",
    ]


def test_validate_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORP_TEST_SECRET", "from-the-environment")
    config = validate(minimal(secret="${ORP_TEST_SECRET}"), now=NOW)
    assert config.connections["app-7"].secret == "from-the-environment"


# -- expires ------------------------------------------------------------------------------------


def test_expires_forms() -> None:
    for value in (dt.date(2027, 6, 30), dt.datetime(2027, 6, 30, 8, 0), "2027-06-30"):
        config = validate(minimal(expires=value), {}, now=NOW)
        assert config.connections["app-7"].expires == dt.date(2027, 6, 30)
    config = validate(minimal(expires="${EXPIRES}"), {"EXPIRES": "2027-06-30"}, now=NOW)
    assert config.connections["app-7"].expires == dt.date(2027, 6, 30)
    assert problems(minimal(expires=20270630)) == [
        "connections.app-7.expires: must be a TOML date such as 2027-06-30"
    ]
    assert problems(minimal(expires="June 30")) == [
        'connections.app-7.expires: invalid date "June 30" (write e.g. 2027-06-30)'
    ]


def test_expires_is_inclusive_in_utc() -> None:
    conn = validate(minimal(expires=dt.date(2026, 3, 1)), {}, now=NOW).connections["app-7"]
    assert not conn.expired(dt.datetime(2026, 3, 1, 23, 59, 59, tzinfo=dt.UTC))
    assert conn.expired(dt.datetime(2026, 3, 2, 0, 0, 0, tzinfo=dt.UTC))
    # 20:00 on 1 March in New York is already 2 March in UTC.
    new_york = dt.timezone(dt.timedelta(hours=-5))
    assert conn.expired(dt.datetime(2026, 3, 1, 20, 0, tzinfo=new_york))


def test_expiry_has_one_definition_shared_by_runtime_and_metrics() -> None:
    from proxy.gateway.runtime import build_runtime
    from proxy.metrics import Metrics

    config = validate(minimal(expires=dt.date(2026, 3, 1)), {}, now=NOW)
    conn = config.connections["app-7"]
    end = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    assert config_mod.expiry_end(dt.date(2026, 3, 1)) == conn.ends_at == end
    assert conn.days_left(NOW) == 0
    assert conn.days_left(end) == -1
    runtime = build_runtime(config, lambda *args: None)  # type: ignore[arg-type,return-value]
    assert runtime.connections["app-7"].ends_at == end.timestamp()
    metrics = Metrics()
    metrics.set_connections(config)
    value = metrics.registry.get_sample_value(
        "oneroster_proxy_connection_expiry_timestamp_seconds",
        {"app": "app-7", "district": "springfield"},
    )
    assert value == end.timestamp()


@pytest.mark.parametrize("name", ["a", "0", "app-7", "A.b_c-d", "x" * 64, "v1.2"])
def test_names_follow_the_one_rule(name: str) -> None:
    doc = minimal()
    doc["connections"] = {name: doc["connections"]["app-7"]}
    doc["vendors"] = {name: {}}
    doc["districts"] = {name: doc["districts"]["springfield"]}
    doc["connections"][name].update(vendor=name, district=name)
    assert list(validate(doc, {}, now=NOW).connections) == [name]


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "-x", "_x", "a~b", "x" * 65, "é", "a b"])
def test_names_outside_the_rule_are_refused(name: str) -> None:
    doc = minimal()
    doc["connections"] = {name: doc["connections"]["app-7"]}
    doc["vendors"][name] = {}
    doc["districts"][name] = doc["districts"]["springfield"]
    rule = "1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or a digit"
    assert problems(doc) == [
        f"vendors.{name}: vendor name must be {rule}",
        f"districts.{name}: district name must be {rule}",
        f"connections.{name}: appId must be {rule}",
    ]


def test_toml_dates_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(minimal(expires=dt.date(2027, 6, 30))))
    assert load(str(path), {}, now=NOW).connections["app-7"].expires == dt.date(2027, 6, 30)


# -- warnings -----------------------------------------------------------------------------------


def test_warnings_never_fail() -> None:
    doc = minimal(expires=dt.date(2026, 3, 20))
    doc["connections"]["app-8"] = {**doc["connections"]["app-7"], "expires": dt.date(2026, 2, 1)}
    doc["connections"]["app-9"] = {**doc["connections"]["app-7"], "expires": dt.date(2026, 4, 1)}
    doc["districts"]["plain"] = {
        "base_url": "http://sis.plain.example",
        "auth": "oauth2",
        "token_url": "http://sis.plain.example/token",
    }
    doc["districts"]["local"] = {"base_url": "http://127.0.0.1:8000"}
    doc["districts"]["localhost"] = {"base_url": "http://localhost:8000"}
    config = validate(doc, {}, now=NOW)
    assert list(config.warnings) == [
        "districts.plain.base_url: plain HTTP; student data would cross the network unencrypted",
        "districts.plain.token_url: plain HTTP; the key and secret would cross the network "
        "unencrypted",
        "connections.app-7.expires: expires in 19 days (2026-03-20)",
        "connections.app-8.expires: expired on 2026-02-01",
    ]


def test_expiry_warning_boundary() -> None:
    on_30 = validate(minimal(expires=dt.date(2026, 3, 31)), {}, now=NOW)
    assert on_30.warnings == ("connections.app-7.expires: expires in 30 days (2026-03-31)",)
    on_31 = validate(minimal(expires=dt.date(2026, 4, 1)), {}, now=NOW)
    assert on_31.warnings == ()


def test_warning_gradebook_without_vendor_authorization() -> None:
    doc = minimal(scopes=["gradebook.readonly"])
    doc["districts"]["springfield"]["vendor_authorization"] = True
    config = validate(doc, {}, now=NOW)
    assert config.warnings == (
        "connections.app-7: district springfield wants x-vendor-authorization on gradebook "
        "calls but vendors.acme.vendor_authorization is not set",
    )
    doc["vendors"]["acme"]["vendor_authorization"] = "LMS:SECRET"
    assert validate(doc, {}, now=NOW).warnings == ()


# -- load() and Infinite Campus keys ------------------------------------------------------------


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path / "missing.toml"))
    assert info.value.problems == [f"{tmp_path / 'missing.toml'}: no such file"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nlisten = 1\n")
    with pytest.raises(ConfigError) as info:
        load(str(bad))
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{bad}: invalid TOML: ")


def test_infinite_campus_vendor_key() -> None:
    guid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert infinite_campus_vendor_key(f"InfiniteCampus_AwesomeLMS_{guid}") == "AwesomeLMS"
    assert infinite_campus_vendor_key(f"InfiniteCampus_Awesome_LMS_{guid}") == "Awesome_LMS"
    assert (
        infinite_campus_vendor_key(f"InfiniteCampus_AwesomeLMS_{guid.replace('-', '')}")
        == "AwesomeLMS"
    )
    assert infinite_campus_vendor_key("InfiniteCampus_AwesomeLMS_not-a-guid") is None
    assert infinite_campus_vendor_key("sandbox-1234") is None


# -- oneroster-proxy config validate ------------------------------------------------------------


def run_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "validate", str(path)])
    captured = capsys.readouterr()
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, captured.out, captured.err


def reviewed(doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``doc`` as a careful operator writes it: the secret from the environment, public_url
    set (so ``config validate`` has no advice to give)."""
    monkeypatch.setenv("APP7_SECRET", "district-secret")
    doc["connections"]["app-7"]["secret"] = "${APP7_SECRET}"
    doc.setdefault("server", {})["public_url"] = "https://proxy.example"
    return doc


def test_cli_validate_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(reviewed(minimal(), monkeypatch)))
    code, out, err = run_validate(path, capsys)
    assert code == 0
    assert out == f"{path}: ok (1 vendor, 1 district, 1 connection)\n"
    assert err == ""


def test_cli_validate_warns_without_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=10)
    doc = reviewed(minimal(expires=expires), monkeypatch)
    doc["districts"]["springfield"]["base_url"] = "http://sis.springfield.example"
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(doc))
    code, out, err = run_validate(path, capsys)
    assert code == 0
    assert out == f"{path}: ok (1 vendor, 1 district, 1 connection, 2 warnings)\n"
    lines = err.splitlines()
    assert lines[0] == (
        "warning: districts.springfield.base_url: plain HTTP; student data would "
        "cross the network unencrypted"
    )
    assert lines[1].startswith("warning: connections.app-7.expires: expires in 10 days")


def test_cli_validate_reports_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = minimal(scopes=["roster.readonly", "gradebook.write"], vendor="nobody")
    doc["server"] = {"upstream_timeout": "soon"}
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(doc))
    code, out, err = run_validate(path, capsys)
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        'server.upstream_timeout: invalid duration "soon" (write e.g. 30s, 15m, 24h, 7d)',
        'connections.app-7.vendor: no vendor "nobody" in [vendors]',
        'connections.app-7.scopes[1]: unknown scope "gradebook.write"',
        f"{path}: invalid (3 problems)",
    ]


def test_cli_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_validate(tmp_path / "nope.toml", capsys)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"{tmp_path / 'nope.toml'}: no such file",
        f"{tmp_path / 'nope.toml'}: invalid (1 problem)",
    ]


async def test_cli_validate_as_installed_entry_point(tmp_path: Path) -> None:
    """The real process: exit status and streams as a shell or CI job sees them."""
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(minimal(secret="${ORP_TEST_MISSING}")))
    env = {k: v for k, v in os.environ.items() if k != "ORP_TEST_MISSING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from proxy.cli import main; main()", "config", "validate", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=REPO,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 1
    assert out == b""
    assert err.decode().splitlines() == [
        "connections.app-7.secret: environment variable ORP_TEST_MISSING is not set",
        f"{path}: invalid (1 problem)",
    ]


def test_config_module_is_side_effect_free() -> None:
    """validate() neither reads files nor changes its input."""
    doc = minimal()
    before = repr(doc)
    config_mod.validate(doc, {}, now=NOW)
    assert repr(doc) == before


def test_cli_validate_advises_on_how_the_file_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_KEY", "jwt-key-0123456789abcdef0123456789")
    doc = minimal(scopes=[])
    doc["server"] = {"jwt_keys": ["${JWT_KEY}", "a-literal-jwt-key-0123456789abcdef"]}
    doc["admin"] = {"token": "literal-admin-token-0123456789"}
    doc["vendors"]["acme"] = {
        "client_secret": "literal-client-secret-0123456789abcdef",
        "vendor_authorization": "LMS:${JWT_KEY}",
    }
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(doc))
    code, out, err = run_validate(path, capsys)
    assert code == 0, err
    literal = "a secret written in the file; write ${NAME} and set NAME in the environment"
    assert err.splitlines() == [
        f"warning: server.jwt_keys[1]: {literal}",
        f"warning: admin.token: {literal}",
        f"warning: vendors.acme.client_secret: {literal}",
        f"warning: connections.app-7.secret: {literal}",
        "warning: connections.app-7.scopes: empty; every request to this connection is "
        "refused (403): list the district's Data to Share",
        "warning: server.public_url: not set, and trust_forwarded = false: rewritten Links and "
        "hrefs name whatever Host a request sends; set public_url (or trust_forwarded = true "
        "behind a load balancer that sets X-Forwarded-Host)",
    ]
    assert out == f"{path}: ok (1 vendor, 1 district, 1 connection, 6 warnings)\n"
    # Either of public_url or trust_forwarded answers the last one.
    doc["server"]["trust_forwarded"] = True
    path.write_text(toml_dumps(doc))
    _, _, err = run_validate(path, capsys)
    assert "server.public_url" not in err


@pytest.mark.parametrize("name", ["..", ".", "ok\n", "a b", "acme corp"])
def test_cli_validate_refuses_names_that_cannot_be_routed(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = minimal()
    doc["vendors"][name] = {}
    doc["districts"][name] = doc["districts"]["springfield"]
    doc["connections"][name] = {**doc["connections"]["app-7"], "vendor": name, "district": name}
    path = tmp_path / "proxy.toml"
    path.write_text(toml_dumps(doc))
    code, out, err = run_validate(path, capsys)
    assert code == 1 and out == ""
    rule = "1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or a digit"
    for what, section in (("vendor name", "vendors"), ("district name", "districts")):
        assert f"{section}.{name}: {what} must be {rule}" in err
    assert f"connections.{name}: appId must be {rule}" in err


def test_urls_with_a_user_name_or_password_are_refused_naming_the_key() -> None:
    """``https://user:pass@host/`` anywhere a URL is configured: one problem naming the key,
    never repeating the password."""
    doc = minimal()
    doc["districts"]["springfield"].update(
        base_url="https://sis:hunter2-pass@sis.springfield.example/api",
        auth="oauth2",
        token_url="https://client@sis.springfield.example/token",
    )
    doc["server"] = {"public_url": "https://u:p@proxy.example"}
    found = problems(doc)
    assert "districts.springfield.base_url: must not contain a user name or password" in (
        " ".join(found)
    )
    for key in ("districts.springfield.token_url", "server.public_url"):
        assert any(p.startswith(f"{key}: must not contain a user name or password") for p in found)
    assert not any("hunter2" in p for p in found)


def test_client_secrets_are_at_least_32_characters() -> None:
    doc = minimal()
    doc["server"] = {"jwt_keys": ["k" * 40]}
    doc["vendors"]["acme"]["client_secret"] = "c" * 31
    assert problems(doc) == ["vendors.acme.client_secret: must be at least 32 characters"]
    doc["vendors"]["acme"]["client_secret"] = "c" * 32
    validate(doc, {}, now=NOW)
