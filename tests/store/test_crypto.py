"""Secrets at rest (docs/commands.md): AES-256-GCM bound to the appId, the connection's key
and where its district sends, ``[store] secret_keys`` (first seals, all open), one-line
errors naming ``store.secret_keys``; and the raw store, sqlite file and redis keys alike,
never holds a secret in clear."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from proxy.config import validate
from proxy.errors import ConfigError
from proxy.store import Store
from proxy.store.crypto import Binding, SecretBox, SecretKeyError, new_key, parse_key
from tests.store.conftest import Backend
from tests.store.test_connections import connection, district

SECRET = "district-secret-Zq8!vL2#pW"


def box(*keys: str) -> SecretBox:
    return SecretBox.from_config(list(keys))


def bind(app_id: str) -> Binding:
    """Where ``connection(app_id)`` of the conformance suite sends: district ``district()``."""
    return Binding.of(app_id, f"key-{app_id}", district())


def test_seal_then_open_with_the_same_appid() -> None:
    key = new_key()
    sealed = box(key).seal(bind("app-7"), SECRET)
    assert SECRET not in sealed and sealed.startswith("orp2.")
    assert box(key).open(bind("app-7"), sealed) == SECRET
    # A fresh nonce per seal: the same secret never seals to the same text.
    assert box(key).seal(bind("app-7"), SECRET) != sealed


def test_a_ciphertext_moved_to_another_appid_does_not_open() -> None:
    key = new_key()
    sealed = box(key).seal(bind("app-7"), SECRET)
    with pytest.raises(SecretKeyError) as err:
        box(key).open(bind("app-8"), sealed)
    message = str(err.value)
    assert "connection app-8" in message and "credentials must be entered again" in message
    assert err.value.reenter and "\n" not in message and SECRET not in message


def test_first_key_seals_every_key_opens() -> None:
    old, new = new_key(), new_key()
    sealed_old = box(old).seal(bind("app-1"), SECRET)
    rotated = box(new, old)
    assert rotated.open(bind("app-1"), sealed_old) == SECRET
    sealed_new = rotated.seal(bind("app-1"), SECRET)
    assert rotated.sealed_with(sealed_new) == rotated.current_id
    assert rotated.sealed_with(sealed_old) != rotated.current_id
    assert box(new).open(bind("app-1"), sealed_new) == SECRET
    with pytest.raises(SecretKeyError, match=r"store\.secret_keys"):
        box(new).open(bind("app-1"), sealed_old)


def test_missing_or_wrong_key_is_one_line_naming_the_config_key() -> None:
    key = new_key()
    sealed = box(key).seal(bind("app-1"), SECRET)
    for attempt in (
        lambda: box().open(bind("app-1"), sealed),
        lambda: box().seal(bind("app-1"), SECRET),
    ):
        with pytest.raises(SecretKeyError) as err:
            attempt()
        assert "store.secret_keys" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SecretKeyError, match="not in the list"):
        box(new_key()).open(bind("app-1"), sealed)
    with pytest.raises(SecretKeyError, match="damaged"):
        box(key).open(bind("app-1"), sealed[:-6] + "AAAAAA")
    with pytest.raises(SecretKeyError, match="not a sealed secret"):
        box(new_key()).open(bind("app-1"), SECRET)


def test_keys_must_be_32_bytes_of_base64url() -> None:
    assert len(parse_key(new_key())) == 32
    padded = base64.urlsafe_b64encode(b"k" * 32).decode()
    assert parse_key(padded) == b"k" * 32
    for bad in ("short", base64.urlsafe_b64encode(b"k" * 16).decode(), "!!!!"):
        with pytest.raises(ValueError, match="32 random bytes"):
            parse_key(bad)


def test_config_secret_keys_every_problem_named_never_the_value() -> None:
    good = new_key()
    short = base64.urlsafe_b64encode(b"x" * 16).decode()
    raw = {"store": {"secret_keys": [good, short, 5, "${ORP_NO_SUCH_KEY}"]}}
    with pytest.raises(ConfigError) as err:
        validate(raw, {})
    assert err.value.problems == [
        "store.secret_keys[1]: must be base64url of 32 random bytes, got 16 bytes",
        "store.secret_keys[2]: must be a string",
        "store.secret_keys[3]: environment variable ORP_NO_SUCH_KEY is not set",
    ]
    assert all(short not in p for p in err.value.problems)
    config = validate({"store": {"secret_keys": ["${K}"]}}, {"K": good})
    assert config.store.secret_keys == (parse_key(good),)
    assert good not in repr(config.store)


async def test_raw_store_holds_no_secret_in_clear(store: Store, backend: Backend) -> None:
    """Read what is on disk (the sqlite file and its WAL) or every redis key, whatever its
    type, and look for the secret and its common encodings."""
    sealer = box(new_key())
    await store.add_district(district())
    for i in range(3):
        app_id = f"app-{i}"
        sealed = sealer.seal(bind(app_id), f"{SECRET}-{i}")
        await store.add_connection(connection(app_id, secret=sealed), district_in_store=True)
    await store.update_connection(connection("app-0", secret=sealer.seal(bind("app-0"), SECRET)))

    raw = _raw_bytes(backend)
    assert b"key-app-1" in raw  # the reader does see the records
    for i in ("", "-0", "-1", "-2"):
        clear = f"{SECRET}{i}".encode()
        for form in (
            clear,
            base64.b64encode(clear),
            base64.urlsafe_b64encode(clear),
            clear.hex().encode(),
        ):
            assert form.rstrip(b"=") not in raw
    opened = await store.get_connection("app-2")
    assert opened is not None and sealer.open(bind("app-2"), opened.secret) == f"{SECRET}-2"


async def test_a_sealed_secret_copied_to_another_appid_in_the_store_fails(store: Store) -> None:
    sealer = box(new_key())
    await store.add_district(district())
    await store.add_connection(
        connection("app-1", secret=sealer.seal(bind("app-1"), SECRET)), district_in_store=True
    )
    stolen = await store.get_connection("app-1")
    assert stolen is not None
    await store.add_connection(connection("app-2", secret=stolen.secret), district_in_store=True)
    copied = await store.get_connection("app-2")
    assert copied is not None and copied.secret == stolen.secret
    with pytest.raises(SecretKeyError, match=r"connection app-2: credentials must be entered"):
        sealer.open(bind("app-2"), copied.secret)


def _raw_bytes(backend: Backend) -> bytes:
    if backend.name == "sqlite":
        path = Path(backend.target)
        return b"".join(
            p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
        )
    out = []
    with redis.Redis.from_url(backend.target) as client:
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            out.append(key)
            if kind == b"hash":
                for field, value in client.hgetall(key).items():
                    out += [field, value]
            elif kind == b"string":
                out.append(client.get(key))
            elif kind == b"zset":
                out += client.zrange(key, 0, -1)
            elif kind == b"set":
                out += list(client.smembers(key))
            elif kind == b"list":
                out += client.lrange(key, 0, -1)
        client.save()
        # And what redis writes to disk.
        directory = client.config_get("dir")["dir"]
        name = client.config_get("dbfilename")["dbfilename"]
        dump = Path(directory) / name
        if dump.exists():
            out.append(dump.read_bytes())
    return b"\n".join(out)


def test_a_secret_opens_only_for_where_it_was_sealed() -> None:
    """Each bound field, changed alone, makes the secret fail to open (credentials must be
    entered again): the appId, the key, and the district's name, auth, base_url, token_url."""
    sealer = box(new_key())
    home = district(auth="oauth2", token_url="https://springfield.example/token")
    where = Binding.of("app-1", "key-app-1", home)
    sealed = sealer.seal(where, SECRET)
    assert sealer.open(where, sealed) == SECRET
    elsewhere = [
        Binding.of("app-2", "key-app-1", home),
        Binding.of("app-1", "key-other", home),
        Binding.of("app-1", "key-app-1", replace(home, name="shelbyville")),
        Binding.of("app-1", "key-app-1", replace(home, auth="oauth1")),
        Binding.of("app-1", "key-app-1", replace(home, base_url="https://evil.example/api")),
        Binding.of("app-1", "key-app-1", replace(home, token_url="https://evil.example/t")),
        Binding.of_config("app-1", "key-app-1", "springfield"),
    ]
    for other in elsewhere:
        with pytest.raises(SecretKeyError) as err:
            sealer.open(other, sealed)
        assert err.value.reenter and "credentials must be entered again" in str(err.value)
    # An oauth1 district never uses a token_url: it binds none.
    plain = Binding.of("app-1", "k", district())
    assert plain == Binding.of("app-1", "k", district(token_url="https://ignored.example/t"))


def test_an_earlier_versions_secret_is_opened_only_to_be_sealed_again() -> None:
    """``orp1.`` (bound to the appId alone, as an earlier version sealed): never opened for
    use, since its district could have been pointed elsewhere; ``open_legacy`` takes it out
    once (store rekey, serve at start) to seal it for its district."""
    key = new_key()
    kid_box = box(key)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = b"\0" * 12
    body = AESGCM(parse_key(key)).encrypt(nonce, SECRET.encode(), b"app-1")
    legacy = f"orp1.{kid_box.current_id}." + base64.urlsafe_b64encode(nonce + body).decode()
    assert kid_box.is_legacy(legacy) and not kid_box.is_current(legacy)
    with pytest.raises(SecretKeyError, match="earlier version"):
        kid_box.open(bind("app-1"), legacy)
    assert kid_box.open_legacy("app-1", legacy) == SECRET
    assert kid_box.is_current(kid_box.seal(bind("app-1"), SECRET))
