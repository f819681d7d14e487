"""Admin token guessing, bounded (THREAT_MODEL.md "Admin API and console"): more than
``MAX_WRONG`` wrong admin tokens from one client address within a minute, through the admin
API's bearer or the console's sign-in, and every further try from that address (the right
token included) is 429 with ``Retry-After`` until that minute ends.

The minute of an address starts with its first wrong token and lasts ``WINDOW`` seconds; the
next wrong token after it starts a new one. Counted in this process, per client address (the
admin listener's peer: it trusts no forwarded header).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_WRONG = 10
WINDOW = 60.0
_MAX_ADDRESSES = 100_000


class TokenGuard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._wrong: dict[str, tuple[float, int]] = {}  # address -> (minute's start, count)

    def _current(self, address: str, now: float) -> tuple[float, int] | None:
        entry = self._wrong.get(address)
        if entry is not None and now - entry[0] >= WINDOW:
            del self._wrong[address]
            return None
        return entry

    def retry_after(self, address: str) -> int:
        """Seconds until the address's minute ends when it already sent ``MAX_WRONG`` wrong
        tokens in it; 0 when it may try."""
        now = self._clock()
        entry = self._current(address, now)
        if entry is None or entry[1] < MAX_WRONG:
            return 0
        return max(1, math.ceil(entry[0] + WINDOW - now))

    def wrong(self, address: str) -> None:
        now = self._clock()
        entry = self._current(address, now)
        if entry is None:
            if len(self._wrong) >= _MAX_ADDRESSES:
                # Ended minutes go first; a flood of fresh addresses cannot grow this unbounded.
                self._wrong = {a: e for a, e in self._wrong.items() if now - e[0] < WINDOW}
                if len(self._wrong) >= _MAX_ADDRESSES:
                    return
            self._wrong[address] = (now, 1)
        else:
            self._wrong[address] = (entry[0], entry[1] + 1)
