"""``serve --workers N``: one supervisor, N worker processes on one listening socket.

SPEC.md "Install and commands" and "Metrics". By role:

- ``supervisor``: starts, watches, signals and replaces the workers; holds the one listening
  socket they all inherit.
- ``control``: the supervisor's admin listener (summed ``/metrics``, ``/readyz`` over every
  worker, reload fan-out).
- ``worker``: one worker process (``proxy.server.serve`` on the inherited socket).
"""

from __future__ import annotations

from .control import WorkerMetrics
from .supervisor import Supervisor, serve_workers
from .worker import worker_main

__all__ = ["Supervisor", "WorkerMetrics", "serve_workers", "worker_main"]
