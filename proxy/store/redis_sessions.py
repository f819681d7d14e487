"""Console sessions in the Redis store (``SessionStore`` of ``base.py``; docs/http-api.md
"Console"): ``orp:session:<id>`` (the SHA-256 of a session's nonce) holds when the session
ends, and Redis drops the key then; "Sign out" deletes it for every replica. Mixed into
``RedisStore``.
"""

from __future__ import annotations

from datetime import datetime

from proxy.store.redis_rows import RedisRole, _us


class RedisSessions(RedisRole):
    """The ``SessionStore`` methods of ``RedisStore``."""

    async def add_session(self, session_id: str, expires: datetime) -> None:
        until = _us(expires)
        with self._unavailable("add_session"):
            await self._client.set(self._key("session", session_id), until, pxat=until // 1000)

    async def session_active(self, session_id: str, at: datetime) -> bool:
        with self._unavailable("session_active"):
            until = await self._client.get(self._key("session", session_id))
        return until is not None and int(until) > _us(at)

    async def end_session(self, session_id: str) -> None:
        with self._unavailable("end_session"):
            await self._client.delete(self._key("session", session_id))
