"""``open_store``: ``[store] url`` -> backend (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.store import open_store
from proxy.store.redis import RedisStore
from proxy.store.sqlite import SqliteStore


def test_sqlite_url_path_is_everything_after_the_scheme() -> None:
    store = open_store("sqlite:///var/lib/oneroster-proxy/store.db")
    assert isinstance(store, SqliteStore)
    assert store.path == "/var/lib/oneroster-proxy/store.db"
    relative = open_store("sqlite://store.db")
    assert isinstance(relative, SqliteStore) and relative.path == "store.db"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/2"])
def test_redis_urls(url: str) -> None:
    assert isinstance(open_store(url), RedisStore)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgres://user:hunter2pw@db.example/x", 'unsupported store "postgres"'),
        ("memcached://127.0.0.1", 'unsupported store "memcached"'),
        ("/var/lib/store.db", "without a scheme"),
        ("sqlite://", "needs a path"),
    ],
)
def test_unknown_or_empty_urls_are_a_clear_value_error(url: str, shown: str) -> None:
    with pytest.raises(ValueError, match="store") as caught:
        open_store(url)
    assert shown in str(caught.value)
    assert "hunter2pw" not in str(caught.value)


async def test_an_opened_sqlite_store_from_a_url_works(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/x/store.db")
    await store.open()
    await store.ping()
    await store.close()
    assert (tmp_path / "x" / "store.db").is_file()


def test_redis_store_display_url_drops_credentials() -> None:
    store = open_store("redis://user:hunter2pw@cache.example:6379/1")
    assert isinstance(store, RedisStore)
    assert store.url_display == "redis://cache.example:6379/1"


def test_sentinel_urls_name_every_sentinel_the_service_and_the_db() -> None:
    from proxy.store.sentinel import parse_sentinel_url

    store = open_store("redis+sentinel://:hunter2pw@s1.example:26379,[::1]:26380,s3/orp/2")
    assert isinstance(store, RedisStore)
    assert store.url_display == "redis+sentinel://s1.example:26379,[::1]:26380,s3:26379/orp/2"
    parsed = parse_sentinel_url("redis+sentinel://u:p%40ss@127.0.0.1:1,127.0.0.1:2/mymaster")
    assert parsed.sentinels == (("127.0.0.1", 1), ("127.0.0.1", 2))
    assert (parsed.service, parsed.db, parsed.username, parsed.password) == (
        "mymaster",
        0,
        "u",
        "p@ss",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://s1:26379", "names the service"),
        ("redis+sentinel://s1:26379/", "names the service"),
        ("redis+sentinel://s1:port/orp", "port must be 1-65535"),
        ("redis+sentinel://s1:26379,,s2/orp", "at least one HOST:PORT"),
        ("redis+sentinel://s1/orp/zero", "only a database number"),
        ("redis+sentinel://::1:26379/orp", "bracket IPv6"),
    ],
)
def test_bad_sentinel_urls_are_config_errors_naming_store_url(url: str, problem: str) -> None:
    from proxy import config as config_mod
    from proxy.errors import ConfigError

    bad = url.replace("s1", ":hunter2pw@s1", 1) if "@" not in url and "::1" not in url else url
    with pytest.raises(ConfigError) as caught:
        config_mod.validate({"store": {"url": bad}})
    (line,) = [p for p in caught.value.problems if p.startswith("store.url")]
    assert problem in line
    assert "hunter2pw" not in line


IPV6_SENTINELS = [
    "redis+sentinel://[::1]:26379,[::1]:26380/mymaster",
    "redis+sentinel://:hunter2pw@127.0.0.1:26379,[::1]:26380/mymaster/2",
]


@pytest.mark.parametrize("url", IPV6_SENTINELS)
def test_ipv6_sentinel_lists_that_validate_also_open(url: str) -> None:
    # Each Python's urllib has its own IPv6 rules (Debian's 3.11.2 refuses the second URL in
    # urlsplit); the store's own parser reads the list the same way for validation and for
    # opening, so a URL config validate accepts is one the store opens.
    from proxy import config as config_mod

    config_mod.validate({"store": {"url": url}})
    store = open_store(url)
    assert isinstance(store, RedisStore)
    assert "[::1]:26380" in store.url_display and "hunter2pw" not in store.url_display
