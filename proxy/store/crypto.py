"""District secrets at rest: AES-256-GCM bound to where the secret is sent.

docs/commands.md: secrets are never in the store in clear; ``[store]
secret_keys`` holds base64url keys of 32 random bytes each, the first encrypts and every one
decrypts (rotation: add the new key first, ``store rekey``, then drop the old one).

The associated data (NIST SP 800-38D §5.2.1) is the ``Binding``: the appId, the connection's
key, and the district's name, ``auth``, ``base_url`` and ``token_url``. A sealed secret copied
onto another connection, or a record whose district was pointed elsewhere by a write to the
store that bypassed the proxy (one SQL UPDATE, one ``redis-cli hset``), fails authentication:
the secret is never opened for a place it was not sealed for (docs/http-api.md). The proxy's
own interfaces re-seal whatever a change affects (``proxy.connections.managed``).

A sealed secret is text: ``orp2.<key id>.<base64url(nonce || ciphertext || tag)>``. Earlier
versions wrote ``orp1.``, bound to the appId only: those are opened only to be sealed again
(``open_legacy``, used by ``store rekey`` and at ``serve`` start), never to be sent. The key id
is the first 8 characters of the base64url SHA-256 of the key: it names which configured key
sealed it (so ``store rekey`` knows what is left to do) and says nothing about the key. The
nonce is 96 random bits per seal; with at most a few million seals per key the collision
probability stays far below the 2^-32 that SP 800-38D §8.3 allows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proxy.errors import BadRequest

PREFIX = "orp2"
LEGACY_PREFIX = "orp1"
KEY_BYTES = 32
NONCE_BYTES = 12
CONFIG_KEY = "store.secret_keys"


class SecretKeyError(BadRequest):
    """A secret that cannot be sealed or opened; the message is one line naming
    ``store.secret_keys`` and never holds a secret or a key. A 400 where a request asked to
    store a secret; the gateway answers 503 for a connection it cannot open. ``reenter``: the
    keys are right but the record does not match what was sealed (it changed outside the
    proxy, or is damaged): the connection's credentials must be entered again."""

    reenter = False


class _Where(Protocol):
    """A district as a binding reads it (a store record or a config-file district)."""

    @property
    def name(self) -> str: ...
    @property
    def auth(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def token_url(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Binding:
    """What a sealed secret is bound to: who it is for and where it is sent."""

    app_id: str
    key: str
    district: str
    auth: str
    base_url: str
    token_url: str | None

    @classmethod
    def of(cls, app_id: str, key: str, district: _Where) -> Binding:
        """Bound to a store district: its name, auth, base_url and token_url."""
        # An oauth1 district never uses its token_url: it binds nothing.
        token_url = district.token_url if district.auth == "oauth2" else None
        return cls(app_id, key, district.name, district.auth, district.base_url, token_url)

    @classmethod
    def of_config(cls, app_id: str, key: str, district: str) -> Binding:
        """Bound to a district of the config file, by name: where it sends is set by the
        file, which no write to the store changes (and a store district of the same name,
        which the file's would shadow, binds differently)."""
        return cls(app_id, key, district, "config-file", "", None)

    def associated_data(self) -> bytes:
        fields = [PREFIX, self.app_id, self.key, self.district, self.auth, self.base_url]
        return json.dumps([*fields, self.token_url], separators=(",", ":")).encode("utf-8")


def parse_key(text: str) -> bytes:
    """The 32 bytes of one ``secret_keys`` entry; ValueError saying what is wrong."""
    value = text.strip()
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be base64url of 32 random bytes") from exc
    if len(raw) != KEY_BYTES:
        raise ValueError(f"must be base64url of 32 random bytes, got {len(raw)} bytes")
    return raw


def new_key() -> str:
    """A fresh ``secret_keys`` entry."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii").rstrip("=")


def key_id(key: bytes) -> str:
    digest = hashlib.sha256(key).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:8]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SecretBox:
    """Seals and opens connection secrets with ``[store] secret_keys``."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keys = [(key_id(k), AESGCM(k)) for k in keys]

    @classmethod
    def from_config(cls, keys: Sequence[str]) -> SecretBox:
        return cls([parse_key(k) for k in keys])

    @property
    def can_seal(self) -> bool:
        return bool(self._keys)

    @property
    def current_id(self) -> str | None:
        return self._keys[0][0] if self._keys else None

    def require(self) -> None:
        """SecretKeyError naming ``store.secret_keys`` unless a secret can be sealed."""
        if not self._keys:
            raise SecretKeyError(
                f"{CONFIG_KEY} is not set: a secret cannot be stored without a key "
                f'(add secret_keys = ["<base64url of 32 random bytes>"] to [store])'
            )

    def seal(self, binding: Binding, secret: str) -> str:
        self.require()
        kid, aead = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, secret.encode("utf-8"), binding.associated_data())
        return f"{PREFIX}.{kid}.{_b64(nonce + sealed)}"

    def sealed_with(self, sealed: str) -> str | None:
        """The key id a sealed secret names (either format), or None if it is not one."""
        parts = sealed.split(".")
        ok = len(parts) == 3 and parts[0] in (PREFIX, LEGACY_PREFIX)
        return parts[1] if ok else None

    def is_current(self, sealed: str) -> bool:
        """Sealed in this version's format with the first key: nothing for rekey to do."""
        return sealed.startswith(PREFIX + ".") and self.sealed_with(sealed) == self.current_id

    @staticmethod
    def is_legacy(sealed: str) -> bool:
        return sealed.startswith(LEGACY_PREFIX + ".")

    def open(self, binding: Binding, sealed: str) -> str:
        if self.is_legacy(sealed):
            raise SecretKeyError(
                f"connection {binding.app_id}: the stored secret was sealed by an earlier "
                "version; run store rekey (serve does it when it starts)"
            )
        return self._open(binding.app_id, binding.associated_data(), sealed, PREFIX)

    def open_legacy(self, app_id: str, sealed: str) -> str:
        """An ``orp1.`` secret (bound to the appId only), to be sealed again at once."""
        return self._open(app_id, app_id.encode("utf-8"), sealed, LEGACY_PREFIX)

    def _open(self, app_id: str, aad: bytes, sealed: str, prefix: str) -> str:
        kid = self.sealed_with(sealed)
        if kid is None or not sealed.startswith(prefix + "."):
            raise SecretKeyError(f"connection {app_id}: the stored secret is not a sealed secret")
        if not self._keys:
            raise SecretKeyError(
                f"connection {app_id}: {CONFIG_KEY} is not set; the stored secret cannot be "
                "decrypted"
            )
        try:
            blob = _unb64(sealed.split(".")[2])
        except (binascii.Error, ValueError) as exc:
            raise SecretKeyError(f"connection {app_id}: the stored secret is damaged") from exc
        nonce, body = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        # The named key first; then every other (an id collision between keys is possible).
        candidates = sorted(self._keys, key=lambda item: item[0] != kid)
        for _, aead in candidates:
            try:
                return aead.decrypt(nonce, body, aad).decode("utf-8")
            except InvalidTag:
                continue
        if any(k == kid for k, _ in self._keys):
            error = SecretKeyError(
                f"connection {app_id}: credentials must be entered again (the stored record "
                "does not match its sealed secret: it was changed outside the proxy, or is "
                "damaged)"
            )
            error.reenter = True
            raise error
        raise SecretKeyError(
            f"connection {app_id}: the stored secret does not decrypt with {CONFIG_KEY} "
            "(it was sealed with a key that is not in the list)"
        )
