"""The change feed in the Redis store (``ChangeStore`` of ``base.py``).

docs/http-api.md "Change feed". Layout (``orp:`` is the default prefix):

    orp:chash:<appId>:<collection>          hash sourcedId -> keyed hash (last complete walk)
    orp:cstage:<appId>:<walkId>:<collection> the same for a walk in progress (expires)
    orp:clog:<appId>:<walkId>               list of "collection\\tsourcedId\\tchange" (expires)
    orp:changes:<appId>                     sorted set of the feed, scored by seq; members
                                            "seq\\tcollection\\tsourcedId\\tchange\\tat(us)"
    orp:cseq:<appId>                        hash: last, floor, key (of the current hashes)
    orp:cwalk:<appId>                       the newest walk, JSON

Nothing of a record but its sourcedId and hash is written. Staging expires after
``STAGE_TTL`` (a replica that died mid-walk leaves nothing for ever); ``publish_walk`` is one
Lua script (staging renamed into place, the log moved into the feed, the walk saved), so no
replica ever sees half a walk. Mixed into ``RedisStore``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from proxy.errors import NotFound
from proxy.store.base import ChangeRecord, WalkRecord
from proxy.store.redis_rows import RedisRole, _time, _us

#: A walk's staging outlives an abandoned walk by this much (seconds).
STAGE_TTL = 2 * 86_400
MISSING_BATCH = 1000

_STAGE = """
-- KEYS: stage hash.  ARGV: ttl, then sourcedId/hash pairs.  Returns the sourcedIds staged
-- already (then nothing is written); a few calls per page, in slices that unpack safely.
local n = (#ARGV - 1) / 2
local repeated = {}
for first = 0, n - 1, 500 do
  local last = math.min(first + 499, n - 1)
  local ids = {}
  for i = first, last do ids[#ids + 1] = ARGV[2 + 2 * i] end
  local found = redis.call('HMGET', KEYS[1], unpack(ids))
  for j = 1, #ids do
    if found[j] then repeated[#repeated + 1] = ids[j] end
  end
end
if #repeated > 0 then return repeated end
for first = 0, n - 1, 500 do
  local last = math.min(first + 499, n - 1)
  redis.call('HSET', KEYS[1], unpack(ARGV, 2 + 2 * first, 3 + 2 * last))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return repeated
"""

_MISSING = """
-- KEYS: current hash, stage hash.  ARGV: HSCAN cursor, count.  Returns {next, ids...}.
local scan = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {scan[1]}
local fields = scan[2]
for i = 1, #fields, 2 do
  if redis.call('HEXISTS', KEYS[2], fields[i]) == 0 then out[#out + 1] = fields[i] end
end
return out
"""

_PUBLISH = """
-- KEYS: walk, seq, changes, log, then (stage, current) pairs per collection.
-- ARGV: walkId, walk JSON, at (us), key id of the hashes.
-- Returns the number published, or -1 (not this walk).
local kept = redis.call('GET', KEYS[1])
if not kept then return -1 end
local walk = cjson.decode(kept)
if walk['walk_id'] ~= ARGV[1] or (walk['state'] ~= 'running' and walk['state'] ~= 'held') then
  return -1
end
for i = 5, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + 1])
    redis.call('PERSIST', KEYS[i + 1])
  else
    redis.call('DEL', KEYS[i + 1])
  end
end
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
local total = redis.call('LLEN', KEYS[4])
local start = 0
while start < total do
  local part = redis.call('LRANGE', KEYS[4], start, start + 999)
  local args = {}
  for j = 1, #part do
    local seq = last + start + j
    args[#args + 1] = seq
    args[#args + 1] = seq .. '\\t' .. part[j] .. '\\t' .. ARGV[3]
  end
  redis.call('ZADD', KEYS[3], unpack(args))
  start = start + 1000
end
redis.call('HSET', KEYS[2], 'last', last + total, 'key', ARGV[4])
redis.call('HSETNX', KEYS[2], 'floor', 0)
redis.call('DEL', KEYS[4])
redis.call('SET', KEYS[1], ARGV[2])
return total
"""

_TRIM = """
-- KEYS: changes, seq.  ARGV: before (us).  Returns how many went.
local gone = 0
local floor = tonumber(redis.call('HGET', KEYS[2], 'floor') or '0')
while true do
  local head = redis.call('ZRANGE', KEYS[1], 0, 999, 'WITHSCORES')
  if #head == 0 then break end
  local stop = false
  for i = 1, #head, 2 do
    local at = tonumber(string.match(head[i], '([^\\t]+)$'))
    if at >= tonumber(ARGV[1]) then stop = true break end
    redis.call('ZREM', KEYS[1], head[i])
    floor = math.max(floor, tonumber(head[i + 1]))
    gone = gone + 1
  end
  if stop then break end
end
if gone > 0 then redis.call('HSET', KEYS[2], 'floor', floor) end
return gone
"""


def _walk_json(walk: WalkRecord) -> str:
    return json.dumps(
        {
            "app_id": walk.app_id,
            "walk_id": walk.walk_id,
            "state": walk.state,
            "started": _us(walk.started),
            "finished": None if walk.finished is None else _us(walk.finished),
            "counts": walk.counts,
            "error": walk.error,
            "key_id": walk.key_id,
        },
        separators=(",", ":"),
    )


def _walk(text: str) -> WalkRecord:
    data: dict[str, Any] = json.loads(text)
    started = _time(str(data["started"]))
    assert started is not None
    finished = data.get("finished")
    return WalkRecord(
        app_id=data["app_id"],
        walk_id=data["walk_id"],
        state=data["state"],
        started=started,
        finished=None if finished is None else _time(str(finished)),
        counts=data.get("counts") or {},
        error=data.get("error"),
        key_id=data.get("key_id"),
    )


class RedisChanges(RedisRole):
    """The ``ChangeStore`` methods of ``RedisStore``."""

    def _register_change_scripts(self) -> None:
        register = self._client.register_script
        self._stage_script = register(_STAGE)
        self._missing_script = register(_MISSING)
        self._publish_script = register(_PUBLISH)
        self._trim_script = register(_TRIM)

    def _ckey(self, kind: str, *parts: str) -> str:
        return self._key(kind, ":".join(parts))

    async def save_walk(self, walk: WalkRecord) -> None:
        with self._unavailable("save_walk"):
            await self._client.set(self._ckey("cwalk", walk.app_id), _walk_json(walk))

    async def get_walk(self, app_id: str) -> WalkRecord | None:
        with self._unavailable("get_walk"):
            text = await self._client.get(self._ckey("cwalk", app_id))
        return None if text is None else _walk(str(text))

    async def known_hashes(
        self, app_id: str, collection: str, sourced_ids: list[str]
    ) -> dict[str, str]:
        if not sourced_ids:
            return {}
        with self._unavailable("known_hashes"):
            values = await self._client.hmget(self._ckey("chash", app_id, collection), sourced_ids)
        return {sid: str(v) for sid, v in zip(sourced_ids, values, strict=True) if v is not None}

    async def known_count(self, app_id: str, collection: str) -> int:
        with self._unavailable("known_count"):
            return int(await self._client.hlen(self._ckey("chash", app_id, collection)))

    async def stage_hashes(
        self, app_id: str, walk_id: str, collection: str, rows: list[tuple[str, str]]
    ) -> list[str]:
        if not rows:
            return []
        args: list[Any] = [STAGE_TTL]
        for sourced_id, digest in rows:
            args += [sourced_id, digest]
        with self._unavailable("stage_hashes"):
            repeated = await self._stage_script(
                keys=[self._ckey("cstage", app_id, walk_id, collection)], args=args
            )
        return list(repeated)

    async def stage_changes(
        self, app_id: str, walk_id: str, changes: list[tuple[str, str, str]]
    ) -> None:
        if not changes:
            return
        key = self._ckey("clog", app_id, walk_id)
        with self._unavailable("stage_changes"):
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(key, *("\t".join(change) for change in changes))
            pipe.expire(key, STAGE_TTL)
            await pipe.execute()

    async def missing_ids(
        self, app_id: str, walk_id: str, collection: str, cursor: str
    ) -> tuple[list[str], str | None]:
        keys = [
            self._ckey("chash", app_id, collection),
            self._ckey("cstage", app_id, walk_id, collection),
        ]
        with self._unavailable("missing_ids"):
            out = await self._missing_script(keys=keys, args=[cursor or "0", MISSING_BATCH])
        following = str(out[0])
        return [str(i) for i in out[1:]], (None if following == "0" else following)

    async def publish_walk(self, walk: WalkRecord, collections: list[str]) -> int:
        app_id, walk_id = walk.app_id, walk.walk_id
        assert walk.finished is not None
        keys = [
            self._ckey("cwalk", app_id),
            self._ckey("cseq", app_id),
            self._ckey("changes", app_id),
            self._ckey("clog", app_id, walk_id),
        ]
        for collection in collections:
            keys.append(self._ckey("cstage", app_id, walk_id, collection))
            keys.append(self._ckey("chash", app_id, collection))
        with self._unavailable("publish_walk"):
            published = int(
                await self._publish_script(
                    keys=keys,
                    args=[walk_id, _walk_json(walk), _us(walk.finished), walk.key_id or ""],
                )
            )
        if published < 0:
            raise NotFound(f"no walk {walk_id} of {app_id} waits to be published")
        return published

    async def drop_walk(self, app_id: str, walk_id: str) -> None:
        with self._unavailable("drop_walk"):
            stages = [
                key
                async for key in self._client.scan_iter(
                    match=self._ckey("cstage", app_id, walk_id, "*"), count=1000
                )
            ]
            await self._client.delete(self._ckey("clog", app_id, walk_id), *stages)

    async def read_changes(self, app_id: str, after: int, limit: int) -> list[ChangeRecord]:
        if limit <= 0:
            return []
        with self._unavailable("read_changes"):
            members = await self._client.zrangebyscore(
                self._ckey("changes", app_id), f"({after}", "+inf", start=0, num=limit
            )
        out = []
        for member in members:
            parts = str(member).split("\t")  # a sourcedId with a tab in it stays whole
            seq, collection, change, at = parts[0], parts[1], parts[-2], parts[-1]
            sourced_id = "\t".join(parts[2:-2])
            when = _time(at)
            assert when is not None
            out.append(ChangeRecord(int(seq), collection, sourced_id, change, when))
        return out

    async def hashes_key(self, app_id: str) -> str | None:
        with self._unavailable("hashes_key"):
            key = await self._client.hget(self._ckey("cseq", app_id), "key")
        return str(key) if key else None

    async def changes_bounds(self, app_id: str) -> tuple[int, int]:
        with self._unavailable("changes_bounds"):
            floor, last = await self._client.hmget(self._ckey("cseq", app_id), ["floor", "last"])
        return int(floor or 0), int(last or 0)

    async def trim_changes(self, app_id: str, before: datetime) -> int:
        keys = [self._ckey("changes", app_id), self._ckey("cseq", app_id)]
        with self._unavailable("trim_changes"):
            return int(await self._trim_script(keys=keys, args=[_us(before)]))

    async def forget_changes(self, app_id: str) -> None:
        with self._unavailable("forget_changes"):
            keys = [self._ckey(k, app_id) for k in ("cwalk", "cseq", "changes")]
            for pattern in ("chash", "cstage", "clog"):
                keys += [
                    key
                    async for key in self._client.scan_iter(
                        match=self._ckey(pattern, app_id, "*"), count=1000
                    )
                ]
            await self._client.delete(*keys)
