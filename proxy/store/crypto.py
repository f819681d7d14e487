"""District secrets at rest: AES-256-GCM with the appId as associated data.

docs/commands.md: secrets are never in the store in clear; ``[store]
secret_keys`` holds base64url keys of 32 random bytes each, the first encrypts and every one
decrypts (rotation: add the new key first, ``store rekey``, then drop the old one). The appId
is the associated data (NIST SP 800-38D §5.2.1), so a sealed secret copied onto another
connection fails authentication instead of signing for the wrong district.

A sealed secret is text: ``orp1.<key id>.<base64url(nonce || ciphertext || tag)>``. The key id
is the first 8 characters of the base64url SHA-256 of the key: it names which configured key
sealed it (so ``store rekey`` knows what is left to do) and says nothing about the key. The
nonce is 96 random bits per seal; with at most a few million seals per key the collision
probability stays far below the 2^-32 that SP 800-38D §8.3 allows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from proxy.errors import BadRequest

PREFIX = "orp1"
KEY_BYTES = 32
NONCE_BYTES = 12
CONFIG_KEY = "store.secret_keys"


class SecretKeyError(BadRequest):
    """A secret that cannot be sealed or opened; the message is one line naming
    ``store.secret_keys`` and never holds a secret or a key. A 400 where a request asked to
    store a secret; the gateway answers 503 for a connection it cannot open."""


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

    def seal(self, app_id: str, secret: str) -> str:
        if not self._keys:
            raise SecretKeyError(
                f"{CONFIG_KEY} is not set: a secret cannot be stored without a key "
                f'(add secret_keys = ["<base64url of 32 random bytes>"] to [store])'
            )
        kid, aead = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, secret.encode("utf-8"), app_id.encode("utf-8"))
        return f"{PREFIX}.{kid}.{_b64(nonce + sealed)}"

    def sealed_with(self, sealed: str) -> str | None:
        """The key id a sealed secret names, or None if it is not one."""
        parts = sealed.split(".")
        return parts[1] if len(parts) == 3 and parts[0] == PREFIX else None

    def open(self, app_id: str, sealed: str) -> str:
        kid = self.sealed_with(sealed)
        if kid is None:
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
                return aead.decrypt(nonce, body, app_id.encode("utf-8")).decode("utf-8")
            except InvalidTag:
                continue
        known = any(k == kid for k, _ in self._keys)
        why = (
            "it was sealed for another appId or is damaged"
            if known
            else "it was sealed with a key that is not in the list"
        )
        raise SecretKeyError(
            f"connection {app_id}: the stored secret does not decrypt with {CONFIG_KEY} ({why})"
        )
