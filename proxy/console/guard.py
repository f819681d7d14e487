"""Admin token guessing, bounded (THREAT_MODEL.md "Admin API and console"): more than
``MAX_WRONG`` wrong admin tokens from one client address within one clock minute, through the
admin API's bearer or the console's sign-in, and every further try from that address (the
right token included) is 429 with ``Retry-After`` until that minute ends.

Counted in this process, per client address (the admin listener's peer: it trusts no
forwarded header). Windows are clock minutes, so "until that minute ends" is exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_WRONG = 10
WINDOW = 60.0
_MAX_ADDRESSES = 100_000


class TokenGuard:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._window = 0
        self._wrong: dict[str, int] = {}

    def _roll(self) -> float:
        now = self._clock()
        window = int(now // WINDOW)
        if window != self._window:
            self._window, self._wrong = window, {}
        return now

    def retry_after(self, address: str) -> int:
        """Seconds until this minute ends when ``address`` already spent its wrong tries; 0
        when it may try."""
        now = self._roll()
        if self._wrong.get(address, 0) < MAX_WRONG:
            return 0
        return max(1, math.ceil((self._window + 1) * WINDOW - now))

    def wrong(self, address: str) -> None:
        self._roll()
        if len(self._wrong) >= _MAX_ADDRESSES and address not in self._wrong:
            return  # a flood of addresses cannot grow this without bound within one minute
        self._wrong[address] = self._wrong.get(address, 0) + 1
