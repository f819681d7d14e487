"""``districts ...``, ``connections ...`` and ``store rekey`` through the real CLI, one
subprocess per command as an operator types them (docs/commands.md): secrets
from standard input or ``--secret-env`` and never shown, every problem at once with its key
path, conflicts exit 1 naming the name, nothing half-written, and commands that read only what
they need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.store.crypto import Binding, SecretBox, new_key, parse_key
from tests.support import toml_dumps

ROOT = Path(__file__).resolve().parents[2]
# Each command has its own limit (``timeout=`` below), which catches a hang and names the
# command; a test's whole run is several interpreter starts, as long as the machine makes them,
# so pytest's per-test timeout (pyproject) is not applied on top.
pytestmark = pytest.mark.timeout(0)
SECRET = "cli-secret-9Qx!never-printed"


class Cli:
    def __init__(self, tmp_path: Path, key: str | None) -> None:
        self.tmp_path = tmp_path
        self.config = tmp_path / "proxy.toml"
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), self.env.get("PYTHONPATH")) if p
        )
        self.env.pop("ORP_CONFIG", None)
        self.outputs: list[str] = []
        store: dict[str, Any] = {"url": f"sqlite://{tmp_path}/store.db"}
        if key is not None:
            store["secret_keys"] = ["${ORP_STORE_KEY}"]
            self.env["ORP_STORE_KEY"] = key
        self.doc: dict[str, Any] = {
            "store": store,
            "vendors": {"acme": {"client_secret": "${ACME_CLIENT_SECRET_UNSET}"}},
            "districts": {
                "springfield": {"base_url": "https://springfield.example/api"},
            },
            "connections": {
                "app-7": {
                    "vendor": "acme",
                    "district": "springfield",
                    "key": "${SPRINGFIELD_KEY_UNSET}",
                    "secret": "${SPRINGFIELD_SECRET_UNSET}",
                    "scopes": ["roster-core.readonly"],
                }
            },
        }
        self.write()

    def write(self) -> None:
        self.config.write_text(toml_dumps(self.doc))

    def __call__(
        self, *args: str, stdin: str | None = "", env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-c", "from proxy.cli import main; main()", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=ROOT,
            timeout=60,
        )
        self.outputs += [done.stdout, done.stderr]
        return done.returncode, done.stdout, done.stderr

    def ok(self, *args: str, **kw: Any) -> str:
        code, out, err = self(*args, "--config", str(self.config), **kw)
        assert code == 0, err
        return out

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kw))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, new_key())


@pytest.fixture(autouse=True)
def no_secret_anywhere(request: pytest.FixtureRequest):
    yield
    cli = request.node.funcargs.get("cli")
    if cli is not None:
        for output in cli.outputs:
            assert SECRET not in output


def test_store_commands_need_only_the_store_table(cli: Cli) -> None:
    """The file's district secrets are unset: serve and config validate refuse it, the store
    commands work."""
    cfg = str(cli.config)
    for args in (
        ("tokens", "list"),
        ("audit",),
        ("connections", "list"),
        ("districts", "list"),
        ("connections", "show", "app-7"),
    ):
        code, _, err = cli(*args, "--config", cfg)
        assert code == 0, (args, err)
    # secret_keys is read only by the commands that seal or open a secret.
    without_key = {k: v for k, v in cli.env.items() if k != "ORP_STORE_KEY"}
    saved, cli.env = cli.env, without_key
    assert cli("tokens", "list", "--config", cfg)[0] == 0
    assert cli("connections", "list", "--config", cfg)[0] == 0
    code, _, err = cli(
        "connections", "add", "s1", "--config", cfg, "--vendor", "acme",
        "--district", "springfield", "--key", "k", "--scopes", "roster.readonly", stdin=SECRET,
    )  # fmt: skip
    assert code == 2 and "store.secret_keys[0]: environment variable ORP_STORE_KEY" in err
    cli.env = saved
    issued = cli.ok("tokens", "issue", "acme")
    assert issued.rstrip().splitlines()[-1].startswith("orp_")
    code, _, err = cli("config", "validate", cfg)
    assert code == 1 and "SPRINGFIELD_SECRET_UNSET is not set" in err
    code, _, err = cli("serve", "--config", cfg)
    assert code != 0 and "connections.app-7.secret" in err
    # A bad [store] table is still refused, naming the key.
    cli.doc["store"]["cache_ttl"] = "soon"
    cli.write()
    code, _, err = cli("tokens", "list", "--config", cfg)
    assert code == 2 and err.startswith("store.cache_ttl: invalid duration")


def test_district_lifecycle_and_refusals(cli: Cli) -> None:
    made = cli.json(
        "districts", "add", "shelbyville", "--base-url", "https://shelbyville.example/oneroster",
        "--auth", "oauth2", "--token-url", "https://shelbyville.example/oauth2/token",
        "--versions", "1.1", "--max-connections", "5", "--max-wait", "5s", "--rate-limit", "60/m",
    )  # fmt: skip
    assert made["source"] == "store" and made["max_connections"] == 5
    assert made["versions"] == ["1.1"] and made["rate_limit"] == "60/m"
    listed = {(d["name"], d["source"]) for d in cli.json("districts", "list")}
    assert listed == {("springfield", "config"), ("shelbyville", "store")}
    changed = cli.json("districts", "update", "shelbyville", "--max-connections", "2")
    assert changed["max_connections"] == 2 and changed["auth"] == "oauth2"

    cfg = str(cli.config)
    code, _, err = cli(
        "districts", "add", "bad name", "--config", cfg, "--base-url", "ftp://x",
        "--auth", "oauth2", "--max-connections", "0", "--rate-limit", "lots",
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2
    assert any(line.startswith("districts.bad name: district name must be") for line in lines)
    assert any(line.startswith("districts.bad name.base_url: invalid URL") for line in lines)
    assert 'districts.bad name.token_url: required with auth = "oauth2"' in lines
    assert "districts.bad name.max_connections: must be an integer >= 1" in lines
    assert any(line.startswith("districts.bad name.rate_limit: invalid rate") for line in lines)
    code, _, err = cli(
        "districts", "add", "springfield", "--config", cfg, "--base-url", "https://x.example"
    )
    assert code == 1 and "springfield" in err and "config file" in err
    code, _, err = cli(
        "districts", "add", "shelbyville", "--config", cfg, "--base-url", "https://x.example"
    )
    assert code == 1 and 'district "shelbyville" already exists' in err
    code, _, err = cli("districts", "remove", "nowhere", "--config", cfg)
    assert code == 1 and "nowhere" in err
    cli.ok("districts", "remove", "shelbyville")
    assert [d["name"] for d in cli.json("districts", "list")] == ["springfield"]


def test_connection_lifecycle_secret_from_stdin_or_env(cli: Cli) -> None:
    made = cli.json(
        "connections", "add", "store-1", "--vendor", "acme", "--district", "springfield",
        "--key", "k1", "--scopes", "roster-core.readonly,roster.readonly",
        "--expires", "2030-06-30", stdin=SECRET + "\n",
    )  # fmt: skip
    assert made == {
        **made,
        "appId": "store-1",
        "key": "k1",
        "scopes": ["roster-core.readonly", "roster.readonly"],
        "expires": "2030-06-30",
        "enabled": True,
        "source": "store",
    }
    cli.ok(
        "connections", "add", "store-2", "--vendor", "acme", "--district", "springfield",
        "--key", "k2", "--scopes", "roster.readonly", "--disabled", "--secret-env", "MY_SECRET",
        env={"MY_SECRET": SECRET + "-2"},
    )  # fmt: skip
    listed = cli.json("connections", "list")
    assert [(c["appId"], c["source"]) for c in listed] == [
        ("app-7", "config"),
        ("store-1", "store"),
        ("store-2", "store"),
    ]
    assert all("secret" not in c for c in listed)
    text = cli.ok("connections", "list", "--vendor", "acme")
    assert text.splitlines()[0].split()[:4] == ["APPID", "VENDOR", "DISTRICT", "SOURCE"]
    assert len(text.splitlines()) == 4
    assert cli.json("connections", "show", "store-2")["enabled"] is False

    # The secrets are stored sealed for their own appIds, keys and (config-file) district.
    import sqlite3

    with sqlite3.connect(cli.tmp_path / "store.db") as db:
        rows = dict(db.execute("SELECT app_id, secret FROM connections"))
    box = SecretBox([parse_key(cli.env["ORP_STORE_KEY"])])
    assert box.open(Binding.of_config("store-1", "k1", "springfield"), rows["store-1"]) == SECRET
    assert box.open(Binding.of_config("store-2", "k2", "springfield"), rows["store-2"]) == (
        SECRET + "-2"
    )

    updated = cli.json("connections", "update", "store-2", "--enable", "--no-expiry")
    assert updated["enabled"] is True and updated["expires"] is None
    renewed = cli.json(
        "connections", "renew", "store-1", "--key", "k1-new", "--no-expiry", stdin=SECRET + "-3\n"
    )
    assert renewed["key"] == "k1-new" and renewed["expires"] is None
    with sqlite3.connect(cli.tmp_path / "store.db") as db:
        sealed = db.execute("SELECT secret FROM connections WHERE app_id = 'store-1'").fetchone()
    assert box.open(Binding.of_config("store-1", "k1-new", "springfield"), sealed[0]) == (
        SECRET + "-3"
    )
    out = cli.ok("connections", "remove", "store-2")
    assert "removed connection store-2" in out
    audit = cli.json("audit")
    actions = [(e["action"], e["interface"], e["detail"].get("app_id")) for e in audit]
    assert actions == [
        ("connection.add", "cli", "store-1"),
        ("connection.add", "cli", "store-2"),
        ("connection.update", "cli", "store-2"),
        ("connection.renew", "cli", "store-1"),
        ("connection.remove", "cli", "store-2"),
    ]


def test_bad_connection_input_every_problem_nothing_written(cli: Cli) -> None:
    cfg = str(cli.config)
    base = ("connections", "add", "--config", cfg, "--vendor", "acme", "--key", "k")
    code, _, err = cli(
        *base, "..", "--district", "atlantis", "--scopes", "roster.readonly,gradebook.write",
        stdin="",
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2
    assert any(line.startswith("connections...: appId must be") for line in lines), lines
    assert 'connections....scopes[1]: unknown scope "gradebook.write"' in lines
    assert "connections....secret: required" in lines
    assert 'connections....district: no district "atlantis" in [districts] or the store' in lines
    code, _, err = cli(*base, "app-7", "--district", "springfield", "--scopes", "roster.readonly",
                       stdin=SECRET)  # fmt: skip
    assert code == 1 and "connection app-7 is defined in the config file" in err
    code, _, err = cli(*base, "s1", "--district", "springfield", "--scopes", "roster.readonly",
                       "--secret-env", "NOT_SET_ANYWHERE")  # fmt: skip
    assert code == 2 and "NOT_SET_ANYWHERE" in err
    code, out, err = cli("connections", "list", "--config", cfg, "--json")
    assert [c["appId"] for c in json.loads(out)] == ["app-7"]
    assert cli.json("audit") == []


def test_without_secret_keys_a_secret_cannot_be_stored(tmp_path: Path) -> None:
    cli = Cli(tmp_path, None)
    cfg = str(cli.config)
    code, _, err = cli(
        "connections", "add", "s1", "--config", cfg, "--vendor", "acme",
        "--district", "springfield", "--key", "k", "--scopes", "roster.readonly", stdin=SECRET,
    )  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1 and "store.secret_keys" in err
    assert "Traceback" not in err
    # A key that is not a key: one line naming store.secret_keys[0].
    cli.doc["store"]["secret_keys"] = ["not-a-key"]
    cli.write()
    code, _, err = cli(
        "connections", "add", "s1", "--config", cfg, "--vendor", "acme",
        "--district", "springfield", "--key", "k", "--scopes", "roster.readonly", stdin=SECRET,
    )  # fmt: skip
    assert code == 2 and err.startswith("store.secret_keys[0]: must be base64url")
    assert SECRET not in err


def test_import_dry_run_then_import_then_again(cli: Cli) -> None:
    other = cli.tmp_path / "old.toml"
    (cli.tmp_path / "secret.txt").write_text(SECRET + "-file\n")
    other.write_text(
        toml_dumps(
            {
                "vendors": {"acme": {}},
                "districts": {
                    "ogdenville": {
                        "base_url": "https://ogdenville.example/api",
                        "max_connections": 3,
                    }
                },
                "connections": {
                    "og-1": {
                        "vendor": "acme", "district": "ogdenville", "key": "og-key",
                        "secret": f"${{file:{cli.tmp_path}/secret.txt}}",
                        "scopes": ["roster.readonly"], "expires": "2031-01-01",
                    },
                    "og-2": {
                        "vendor": "acme", "district": "ogdenville", "key": "og-key-2",
                        "secret": "${OG_SECRET}", "scopes": ["roster-core.readonly"],
                    },
                },
            }
        )
    )  # fmt: skip
    env = {"OG_SECRET": SECRET + "-env"}
    dry = cli.ok("connections", "import", str(other), "--dry-run", env=env)
    assert "would add district ogdenville" in dry and "would add connection og-1" in dry
    assert "nothing written" in dry
    assert [c["appId"] for c in cli.json("connections", "list")] == ["app-7"]
    done = cli.ok("connections", "import", str(other), env=env)
    assert "added connection og-2 (acme -> ogdenville)" in done
    stored = {c["appId"]: c for c in cli.json("connections", "list") if c["source"] == "store"}
    assert stored["og-1"]["expires"] == "2031-01-01" and set(stored) == {"og-1", "og-2"}
    assert cli.json("districts", "show", "ogdenville")["max_connections"] == 3
    again = cli.ok("connections", "import", str(other), env=env)
    assert "unchanged connection og-1" in again and "added" not in again
    # A changed secret is a conflict, and nothing else is written either.
    code, _, err = cli(
        "connections", "import", str(other), "--config", str(cli.config),
        env={"OG_SECRET": "changed"},
    )  # fmt: skip
    assert code == 1 and "connections.og-2: in the store already, with other values" in err
    # The config file's own districts cannot be imported over.
    code, _, err = cli("connections", "import", str(cli.config), "--config", str(cli.config))
    assert code != 0


def test_import_reads_vendors_from_the_config_file(cli: Cli) -> None:
    # docs/commands.md: the imported file holds districts and connections only; its
    # connections' vendors are --config's.
    other = cli.tmp_path / "districts.toml"
    connection = {
        "district": "ogdenville", "key": "og-key", "secret": "${OG_SECRET}",
        "scopes": ["roster.readonly"],
    }  # fmt: skip
    doc: dict[str, Any] = {
        "districts": {"ogdenville": {"base_url": "https://ogdenville.example/api"}},
        "connections": {"og-1": {"vendor": "acme", **connection}},
    }
    other.write_text(toml_dumps(doc))
    env = {"OG_SECRET": SECRET}
    done = cli.ok("connections", "import", str(other), env=env)
    assert "added connection og-1 (acme -> ogdenville)" in done
    # A vendor --config's file lacks is named as missing from that file, and nothing is written.
    doc["connections"] = {"og-2": {"vendor": "zeta", **connection}}
    other.write_text(toml_dumps(doc))
    code, _, err = cli("connections", "import", str(other), "--config", str(cli.config), env=env)
    assert code == 1, err
    assert f'connections.og-2.vendor: vendor "zeta" is not in {cli.config}' in err
    assert "og-2" not in {c["appId"] for c in cli.json("connections", "list")}


def test_store_rekey(cli: Cli) -> None:
    old = cli.env["ORP_STORE_KEY"]
    for i in range(3):
        cli.ok(
            "connections", "add", f"s{i}", "--vendor", "acme", "--district", "springfield",
            "--key", "k", "--scopes", "roster.readonly", stdin=f"{SECRET}-{i}",
        )  # fmt: skip
    new = new_key()
    cli.doc["store"]["secret_keys"] = ["${NEW_KEY}", "${ORP_STORE_KEY}"]
    cli.write()
    out = cli.ok("store", "rekey", env={"NEW_KEY": new})
    assert "re-encrypted 3 of 3" in out
    assert "re-encrypted 0 of 3" in cli.ok("store", "rekey", env={"NEW_KEY": new})
    import sqlite3

    with sqlite3.connect(cli.tmp_path / "store.db") as db:
        rows = dict(db.execute("SELECT app_id, secret FROM connections"))
    only_new = SecretBox([parse_key(new)])
    where = [Binding.of_config(f"s{i}", "k", "springfield") for i in range(3)]
    assert [only_new.open(where[i], rows[f"s{i}"]) for i in range(3)] == [
        f"{SECRET}-{i}" for i in range(3)
    ]
    with pytest.raises(Exception, match=r"store\.secret_keys"):
        SecretBox([parse_key(old)]).open(where[0], rows["s0"])


def test_an_import_cut_short_adds_what_is_missing_with_its_audit_events(cli: Cli) -> None:
    """The audit trail cannot take an event (a full disk) in the middle of an import: the
    connection being added is not kept either, and running the import again adds it, with
    its ``connection.add``."""
    import sqlite3

    def conn(i: int) -> dict[str, Any]:
        return {
            "vendor": "acme", "district": "ogdenville", "key": f"og-key-{i}",
            "secret": f"{SECRET}-{i}", "scopes": ["roster.readonly"],
        }  # fmt: skip

    doc: dict[str, Any] = {
        "vendors": {"acme": {}},
        "districts": {"ogdenville": {"base_url": "https://ogdenville.example/api"}},
        "connections": {"og-1": conn(1)},
    }
    first, whole = cli.tmp_path / "first.toml", cli.tmp_path / "whole.toml"
    first.write_text(toml_dumps(doc))
    doc["connections"]["og-2"] = conn(2)
    whole.write_text(toml_dumps(doc))
    cli.ok("connections", "import", str(first))

    db_path = cli.tmp_path / "store.db"
    with sqlite3.connect(db_path) as db:  # the audit trail stops taking events
        db.execute("ALTER TABLE audit RENAME TO audit_kept")
        db.execute("CREATE VIEW audit AS SELECT * FROM audit_kept")
    code, _, err = cli("connections", "import", str(whole), "--config", str(cli.config))
    assert code != 0 and "Traceback" not in err
    with sqlite3.connect(db_path) as db:
        assert [r[0] for r in db.execute("SELECT app_id FROM connections")] == ["og-1"]
        db.execute("DROP VIEW audit")
        db.execute("ALTER TABLE audit_kept RENAME TO audit")

    again = cli.ok("connections", "import", str(whole))
    assert "added connection og-2" in again and "unchanged connection og-1" in again
    added = [e["detail"]["app_id"] for e in cli.json("audit") if e["action"] == "connection.add"]
    assert added == ["og-1", "og-2"]


def test_a_district_url_with_a_password_is_refused_by_the_cli(cli: Cli) -> None:
    for flag in ("--base-url", "--token-url"):
        args = ["--base-url", "https://ok.example/api", "--auth", "oauth2"]
        args += ["--token-url", "https://ok.example/token"]
        args[args.index(flag) + 1] = "https://sis:hunter2-pw@ok.example/x"
        code, out, err = cli("districts", "add", "ogdenville", *args, "--config", str(cli.config))
        key = flag.removeprefix("--").replace("-", "_")
        assert code == 2 and f"{key}: must not contain a user name or password" in err
        assert "hunter2" not in out + err
    assert cli.json("districts", "list") == [d for d in cli.json("districts", "list")]
    assert all(d["name"] != "ogdenville" for d in cli.json("districts", "list"))


def test_districts_update_reseals_its_connections(cli: Cli) -> None:
    """A change of where a store district sends re-seals each of its connections' secrets
    for the new values, in the same step; the old binding no longer opens them."""
    import sqlite3

    from proxy.store.base import DistrictRecord

    cli.ok("districts", "add", "ogdenville", "--base-url", "https://og.example/api")
    cli.ok(
        "connections", "add", "og-1", "--vendor", "acme", "--district", "ogdenville",
        "--key", "k", "--scopes", "roster.readonly", stdin=SECRET,
    )  # fmt: skip
    cli.ok(
        "districts", "update", "ogdenville", "--auth", "oauth2", "--token-url",
        "https://og.example/token", "--base-url", "https://og2.example/api",
    )  # fmt: skip
    with sqlite3.connect(cli.tmp_path / "store.db") as db:
        sealed = db.execute("SELECT secret FROM connections WHERE app_id = 'og-1'").fetchone()[0]
    box = SecretBox([parse_key(cli.env["ORP_STORE_KEY"])])

    def where(**values: str) -> Binding:
        return Binding.of(
            "og-1", "k", DistrictRecord(name="ogdenville", created=None, updated=None, **values)
        )  # type: ignore[arg-type]

    now = where(
        base_url="https://og2.example/api", auth="oauth2", token_url="https://og.example/token"
    )
    assert box.open(now, sealed) == SECRET
    with pytest.raises(Exception, match="credentials must be entered again"):
        box.open(where(base_url="https://og.example/api"), sealed)
    actions = [e["action"] for e in cli.json("audit")]
    assert actions[-1] == "district.update"


def test_show_and_list_print_booleans_and_absent_values_as_words(cli: Cli) -> None:
    cli.ok(
        "connections", "add", "s1", "--vendor", "acme", "--district", "springfield",
        "--key", "k", "--scopes", "roster.readonly", "--disabled", stdin=SECRET,
    )  # fmt: skip
    shown = cli.ok("connections", "show", "s1")
    assert "enabled: no" in shown and "expires: -" in shown, shown
    for text in (shown, cli.ok("connections", "list"), cli.ok("districts", "list")):
        assert not any(word in text for word in ("True", "False", "None")), text
    assert cli.json("connections", "show", "s1")["enabled"] is False  # JSON keeps its own


def test_district_windows_pause_and_resume(cli: Cli) -> None:
    """docs/commands.md ``districts pause|resume`` and the window flags: a refused change names
    its key and writes nothing; the human view shows no Python value."""
    from datetime import UTC, datetime, timedelta

    made = cli.json(
        "districts", "add", "shelbyville", "--base-url", "https://shelbyville.example/oneroster",
        "--timezone", "America/Chicago", "--window", "mon-fri 07:00-16:00 1",
        "--max-connections", "5",
    )  # fmt: skip
    assert made["timezone"] == "America/Chicago"
    assert made["windows"] == [
        {"days": "mon-fri", "from": "07:00", "to": "16:00", "max_connections": 1}
    ]
    cfg = str(cli.config)
    code, _, err = cli(
        "districts", "update", "shelbyville", "--config", cfg, "--timezone", "Mars/Olympus",
        "--window", "mon-fri 07:00-16:00 1", "--window", "fri 15:00-17:00 2",
    )  # fmt: skip
    assert code == 2
    assert 'districts.shelbyville.timezone: unknown time zone "Mars/Olympus"' in err
    assert "districts.shelbyville.windows[1]: overlaps windows[0]" in err
    code, _, err = cli(
        "districts", "pause", "shelbyville", "--config", cfg,
        "--from", "2027-08-01", "--to", "2027-06-20", "--reason", "summer rollover",
    )  # fmt: skip
    assert code == 2
    assert "districts.shelbyville.pauses[0].to: 2027-06-20 is before from = 2027-08-01" in err
    assert cli.json("districts", "show", "shelbyville") == {**made, "updated": made["updated"]}

    today = datetime.now(UTC).date()
    start, end = (today - timedelta(days=2)).isoformat(), (today + timedelta(days=2)).isoformat()
    paused = cli.json(
        "districts", "pause", "shelbyville", "--from", start, "--to", end, "--reason", "rollover"
    )
    assert paused["pauses"] == [{"from": start, "to": end, "reason": "rollover"}]
    shown = cli.ok("districts", "show", "shelbyville")
    assert f"pauses: from={start} to={end} reason=rollover" in shown
    assert "windows: days=mon-fri from=07:00 to=16:00 max_connections=1" in shown
    assert "{" not in shown and "True" not in shown and "None" not in shown
    assert cli.json("districts", "resume", "shelbyville")["pauses"] == []
    code, _, err = cli("districts", "resume", "shelbyville", "--config", cfg)
    assert code == 1 and 'district "shelbyville" is not paused' in err
    assert cli.json("districts", "update", "shelbyville", "--no-windows")["windows"] == []
    assert "windows: -" in cli.ok("districts", "show", "shelbyville")
