"""What the store commands read of a config file: ``[store]``, and names.

docs/commands.md: ``tokens ...``, ``audit``, ``connections ...`` and
``districts ...`` need the ``[store]`` table (and ``secret_keys`` where they write a secret),
never the secrets of unrelated districts. So they do not run the whole ``config.validate``
(which resolves every ``${...}``): ``[store]`` is validated on its own, ``secret_keys`` only
when a command seals or opens a secret, and the rest of the file is read for its names (vendor
names, the districts and connections the file defines, as raw tables). ``serve`` and ``check``
still validate everything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy import config as config_mod
from proxy.config import StoreConfig
from proxy.connections.managed import ConfigEntries
from proxy.errors import ConfigError
from proxy.store.crypto import SecretBox


@dataclass(frozen=True)
class StoreOnly:
    """A config file as the store commands see it; quacks like ``Config`` for ``store``,
    ``vendors`` and ``source``."""

    store: StoreConfig
    vendors: Mapping[str, Any]
    districts: Mapping[str, Any]
    connections: Mapping[str, Any]
    source: str
    _store_table: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def catalog(self) -> ConfigEntries:
        return ConfigEntries(frozenset(self.vendors), self.districts, self.connections)

    def secret_box(self) -> SecretBox:
        """``[store] secret_keys`` resolved now; ConfigError naming ``store.secret_keys[i]``.
        Without the key, a box that refuses to seal or open, naming it."""
        table = {"secret_keys": self._store_table["secret_keys"]}
        if table["secret_keys"] is None:
            return SecretBox([])
        keys = config_mod.validate({"store": table}, os.environ).store.secret_keys
        return SecretBox(list(keys))


def load_store_only(path: str) -> StoreOnly:
    """Read ``path`` for a store command; ConfigError for a missing file, bad TOML or a bad
    ``[store]`` table (every problem at once)."""
    raw = config_mod.read_toml(path)
    store_table = raw.get("store", {})
    if not isinstance(store_table, dict):
        raise ConfigError(["store: must be a table"])
    rest = {k: v for k, v in store_table.items() if k != "secret_keys"}
    config = config_mod.validate({"store": rest}, os.environ, source=path)
    return StoreOnly(
        store=config.store,
        vendors=_tables(raw, "vendors"),
        districts=_tables(raw, "districts"),
        connections=_tables(raw, "connections"),
        source=path,
        _store_table={"secret_keys": store_table.get("secret_keys")},
    )


def _tables(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    return dict(value) if isinstance(value, dict) else {}
