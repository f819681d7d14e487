"""``serve --workers N``: one supervisor, N worker processes on one listening socket.

docs/commands.md, docs/metrics.md. By role:

- ``supervisor``: starts, watches, signals and replaces the workers; holds the one listening
  socket they all inherit.
- ``control``: the supervisor's admin listener (summed ``/metrics``, ``/readyz`` over every
  worker, reload fan-out).
- ``worker``: one worker process (``proxy.serve.server.serve`` on the inherited socket).
"""

from __future__ import annotations

from proxy.serve.workers.control import WorkerMetrics
from proxy.serve.workers.supervisor import Supervisor, serve_workers
from proxy.serve.workers.worker import worker_main

__all__ = ["Supervisor", "WorkerMetrics", "serve_workers", "worker_main"]
