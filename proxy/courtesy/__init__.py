"""SIS courtesy: a district's peak-hour windows, its pauses and fair share of its slots
(docs/configuration.md "SIS courtesy").

``schedule`` is pure time-zone math over a district's ``timezone``, ``windows`` and ``pauses``
(every function takes the time as an argument); ``fair`` the round-robin waiting queue in front
of a district's slots. What other parts call: ``paused(district, now)`` and
``cap_at(district, now)``.
"""

from __future__ import annotations

from proxy.courtesy.schedule import (
    Pause,
    Window,
    cap_at,
    coming_pause,
    describe_now,
    pause_end,
    paused,
    window_at,
)

__all__ = [
    "Pause",
    "Window",
    "cap_at",
    "coming_pause",
    "describe_now",
    "pause_end",
    "paused",
    "window_at",
]
