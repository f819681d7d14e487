"""Outstanding intake links and what a spent link saves, in the Redis store (``IntakeStore`` of
``base.py``; THREAT_MODEL.md "The intake link"). Mixed into ``RedisStore``.

Links are the ``orp:invite:<hash>`` hashes of ``redis_checks``; listing them scans that key
space (outstanding links are few and short-lived). ``save_intake`` is one Lua script: it checks
the link is usable, that no other connection uses the district (``orp:dconns:<district>``) and
that the appId is still the invite's, then writes the district and the connection with their
indexes and marks the link spent; a refusal writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from proxy.errors import Conflict, NotFound
from proxy.store.base import IntakeSave, InviteRecord
from proxy.store.redis_connections import _flat, connection_fields, district_fields
from proxy.store.redis_rows import RedisRole, _us, audited

_SAVE_INTAKE = """
-- KEYS: invite, district hash, districts index, connection hash, conns index, vendor index,
--       district users.
-- ARGV: at, district name, appId, vendor, n district field values, district pairs, conn pairs
local expires = redis.call('HGET', KEYS[1], 'expires')
if not expires or redis.call('HEXISTS', KEYS[1], 'spent') == 1 then return -1 end
if tonumber(expires) <= tonumber(ARGV[1]) then return -1 end
for _, user in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  if user ~= ARGV[3] then return -2 end
end
local old = redis.call('HMGET', KEYS[4], 'vendor', 'district', 'created')
if old[1] and (old[1] ~= ARGV[4] or old[2] ~= ARGV[2]) then return -3 end
local n = tonumber(ARGV[5])
local created = redis.call('HGET', KEYS[2], 'created')
-- Compare-and-set versions move on from what was stored, so a writer that read the old
-- record cannot overwrite this one.
local dversion = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
local cversion = tonumber(redis.call('HGET', KEYS[4], 'version') or '0')
audit()
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 6, 5 + n))
redis.call('HSET', KEYS[2], 'version', dversion + 1)
if created then redis.call('HSET', KEYS[2], 'created', created) end
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], unpack(ARGV, 6 + n))
redis.call('HSET', KEYS[4], 'version', cversion + 1)
if old[3] then redis.call('HSET', KEYS[4], 'created', old[3]) end
redis.call('ZADD', KEYS[5], 0, ARGV[3])
redis.call('ZADD', KEYS[6], 0, ARGV[3])
redis.call('SADD', KEYS[7], ARGV[3])
redis.call('HSET', KEYS[1], 'spent', ARGV[1])
if old[1] then return 0 end
return 1
"""

_REVOKE = """
-- KEYS: invite hashes.  ARGV: appId, at.  Outstanding links of that appId become spent.
local n = 0
for _, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'app_id', 'expires', 'spent')
  if f[1] == ARGV[1] and not f[3] and tonumber(f[2]) > tonumber(ARGV[2]) then
    redis.call('HSET', key, 'spent', ARGV[2])
    n = n + 1
  end
end
return n
"""


class RedisIntake(RedisRole):
    """The ``IntakeStore`` methods of ``RedisStore``."""

    def _register_intake_scripts(self) -> None:
        register = self._client.register_script
        self._save_intake = register(audited(_SAVE_INTAKE))
        self._revoke_invites = register(_REVOKE)

    async def _invite_hashes(self) -> list[str]:
        prefix = self._key("invite") + ":"
        with self._unavailable("list_invites"):
            return [
                cast("str", key)[len(prefix) :]
                async for key in self._client.scan_iter(match=prefix + "*", count=500)
            ]

    async def list_invites(self, at: datetime) -> list[InviteRecord]:
        out = []
        for token_hash in await self._invite_hashes():
            invite = await self.get_invite(token_hash)
            if invite is not None and invite.usable_at(at):
                out.append(invite)
        return sorted(out, key=lambda i: (i.created, i.app_id))

    async def get_invite(self, token_hash: str) -> InviteRecord | None:
        raise NotImplementedError  # supplied by RedisChecks

    async def revoke_invites(self, app_id: str, at: datetime) -> int:
        keys = [self._key("invite", h) for h in await self._invite_hashes()]
        if not keys:
            return 0
        with self._unavailable("revoke_invites"):
            done = await self._revoke_invites(keys=keys, args=[app_id, _us(at)])
        return int(done)

    async def save_intake(self, save: IntakeSave) -> bool:
        token_hash, at, district, connection = (
            save.token_hash,
            save.at,
            save.district,
            save.connection,
        )
        d_fields = _flat(district_fields(district))
        keys = [
            self._key("invite", token_hash),
            self._key("district", district.name),
            self._key("districts"),
            self._key("conn", connection.app_id),
            self._key("conns"),
            self._key("vconns", connection.vendor),
            self._key("dconns", district.name),
        ]
        args = [
            _us(at),
            district.name,
            connection.app_id,
            connection.vendor,
            len(d_fields),
            *d_fields,
            *_flat(connection_fields(connection)),
        ]
        keys, args = self._audited(keys, args, save.audit)
        with self._unavailable("save_intake"):
            result = int(await self._save_intake(keys=keys, args=args))
        if result == -1:
            raise NotFound("unknown, expired or spent intake link")
        if result == -2:
            raise Conflict(f'district "{district.name}" is used by another connection')
        if result == -3:
            raise Conflict(f"connection {connection.app_id} changed since the link was made")
        return result == 1
