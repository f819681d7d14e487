"""Background check results and intake links in the Redis store (``CheckStore`` of
``base.py``): ``orp:checks:<appId>`` lists capped at ``CHECK_HISTORY``, ``orp:invite:<hash>``
hashes that Redis drops a day after they expire. Mixed into ``RedisStore``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from proxy.store.base import (
    CHECK_HISTORY,
    CheckResult,
    InviteRecord,
)
from proxy.store.redis_rows import RedisRole, _time, _us

_ADD_INVITE = """
-- KEYS: invite hash.  ARGV: expire-at (ms), then hash field/value pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""

_SPEND_INVITE = """
-- KEYS: invite hash.  ARGV: at.  Exactly one caller wins: the script runs alone.
local expires = redis.call('HGET', KEYS[1], 'expires')
if not expires or redis.call('HEXISTS', KEYS[1], 'spent') == 1 then return 0 end
if tonumber(expires) <= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1])
return 1
"""


class RedisChecks(RedisRole):
    """The ``CheckStore`` methods of ``RedisStore``."""

    def _register_check_scripts(self) -> None:
        register = self._client.register_script
        self._add_invite = register(_ADD_INVITE)
        self._spend_invite = register(_SPEND_INVITE)

    # -- background checks and intake links ---------------------------------------------------

    async def add_check_result(self, result: CheckResult) -> None:
        entry = json.dumps(
            {"at": _us(result.at), "document": result.document}, separators=(",", ":")
        )
        key = self._key("checks", result.app_id)
        with self._unavailable("add_check_result"):
            pipe = self._client.pipeline(transaction=True)
            pipe.lpush(key, entry)
            pipe.ltrim(key, 0, CHECK_HISTORY - 1)
            await pipe.execute()

    @staticmethod
    def _check_result(app_id: str, entry: str) -> CheckResult:
        data: dict[str, Any] = json.loads(entry)
        at = _time(str(data["at"]))
        assert at is not None
        return CheckResult(app_id=app_id, at=at, document=data["document"])

    async def list_check_results(
        self, app_id: str, limit: int = CHECK_HISTORY
    ) -> list[CheckResult]:
        if limit <= 0:
            return []
        with self._unavailable("list_check_results"):
            entries = cast(
                "list[str]",
                await self._client.lrange(self._key("checks", app_id), 0, limit - 1),
            )
        return [self._check_result(app_id, e) for e in entries]

    async def last_check_results(self, app_ids: list[str]) -> dict[str, list[CheckResult]]:
        if not app_ids:
            return {}
        with self._unavailable("last_check_results"):
            pipe = self._client.pipeline(transaction=False)
            for app_id in app_ids:
                pipe.lrange(self._key("checks", app_id), 0, 1)
            rows = await pipe.execute()
        return {
            app_id: [self._check_result(app_id, e) for e in entries]
            for app_id, entries in zip(app_ids, rows, strict=True)
            if entries
        }

    async def add_invite(self, invite: InviteRecord) -> None:
        fields: list[str | int] = [
            "app_id",
            invite.app_id,
            "vendor",
            invite.vendor,
            "district_name",
            invite.district_name,
            "scopes",
            json.dumps(list(invite.scopes)),
            "created",
            _us(invite.created),
            "expires",
            _us(invite.expires),
        ]
        if invite.spent is not None:
            fields += ["spent", _us(invite.spent)]
        # Kept a day past its expiry, so a late visitor still meets "expired", then dropped.
        drop_at_ms = _us(invite.expires) // 1000 + 86_400_000
        with self._unavailable("add_invite"):
            added = await self._add_invite(
                keys=[self._key("invite", invite.token_hash)], args=[drop_at_ms, *fields]
            )
        if not added:
            raise ValueError("an invite with that token already exists")

    async def get_invite(self, token_hash: str) -> InviteRecord | None:
        with self._unavailable("get_invite"):
            fields = cast(
                "dict[str, str]", await self._client.hgetall(self._key("invite", token_hash))
            )
        if not fields:
            return None
        created, expires = _time(fields["created"]), _time(fields["expires"])
        assert created is not None and expires is not None
        return InviteRecord(
            token_hash=token_hash,
            app_id=fields["app_id"],
            vendor=fields["vendor"],
            district_name=fields["district_name"],
            scopes=tuple(json.loads(fields["scopes"])),
            created=created,
            expires=expires,
            spent=_time(fields.get("spent")),
        )

    async def spend_invite(self, token_hash: str, at: datetime) -> bool:
        with self._unavailable("spend_invite"):
            done = await self._spend_invite(keys=[self._key("invite", token_hash)], args=[_us(at)])
        return bool(done)
