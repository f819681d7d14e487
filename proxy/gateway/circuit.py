"""Circuit breaking per district: when a district's circuit opens, half-opens and closes.

docs/http-api.md (the status table's 503 with ``Retry-After``, and the paragraph on
retries: a failing district is not hammered), "Admin listener" and "Console" (each connection's
circuit state). The breaker itself, as THREAT_MODEL.md states it for operators:

* **Closed** (the start): every attempt goes through. Connect failures and timeouts count
  (``record_failure``, once per request); any answer from the district, whatever its status,
  resets the count (``record_success``): a district answering 4xx/5xx is up. A connection the
  district accepted and then closed (``record_neutral``) counts neither way: a request can
  bring that on itself, and one vendor must not pause a district for every other.
* **Open** after ``threshold`` failures in a row: for ``cooldown`` seconds every attempt fails
  fast with 503 and ``Retry-After`` (the rest of the cool-down), no request sent; the gauge
  ``oneroster_proxy_circuit_open{district}`` is 1.
* **Half-open** once the cool-down has passed: exactly one probe goes through at a time (the
  others get 503, ``Retry-After: 1``). Its success closes the circuit; its failure opens it for
  another cool-down. A probe that never reports (its vendor went away) stops counting at its
  deadline, so the circuit cannot stay wedged.

Per process, in memory: each worker or replica opens on its own failures; a failing district is
seen failing by all of them within a few requests, and a per-process breaker cannot be wedged
open by another process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.config import DistrictConfig
from proxy.errors import ServiceUnavailable

if TYPE_CHECKING:
    from proxy.metrics import Metrics

log = logging.getLogger("oneroster_proxy")

#: Consecutive connect failures/timeouts that open a district's circuit.
THRESHOLD = 5
#: Seconds an open circuit fails fast before letting one probe through.
COOLDOWN = 30.0


@dataclass(slots=True)
class Circuit:
    """One district's breaker: closed -> open (after ``threshold`` failures in a row) ->
    half-open (after the cool-down; one probe) -> closed on success, open again on failure."""

    failures: int = 0
    opened_at: float | None = None
    probe_until: float | None = None  # a probe is in flight until then (its deadline)

    def state(self, now: float, cooldown: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if now < self.opened_at + cooldown else "half-open"


class Circuits:
    """Every district's breaker of one app; kept across config reloads (keyed by district name).

    ``threshold`` and ``cooldown`` are read on every request, so an operator (or a test) may
    change them on a running instance.
    """

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        threshold: int = THRESHOLD,
        cooldown: float = COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._circuits: dict[str, Circuit] = {}

    def check(self, district: DistrictConfig, deadline: float | None) -> None:
        """Called before each upstream attempt: 503 + Retry-After while the circuit is open, or
        while it is half-open and its one probe is in flight; else the attempt may go (and is
        the probe, until ``deadline``, when the circuit is half-open)."""
        circuit = self._circuits.get(district.name)
        if circuit is None or circuit.opened_at is None:
            return
        now = self._clock()
        cooldown = self.cooldown
        if circuit.state(now, cooldown) == "open":
            raise self._open(district, circuit.opened_at + cooldown - now)
        # Half-open: exactly one probe at a time. A probe that never reports (its vendor went
        # away) stops counting at its deadline, so the circuit cannot stay wedged.
        if circuit.probe_until is not None and now < circuit.probe_until:
            raise self._open(district, 1.0)
        circuit.probe_until = deadline if deadline is not None else now + cooldown

    def _open(self, district: DistrictConfig, retry_after: float) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"district {district.name} is failing; requests to it are paused",
            retry_after=max(1.0, retry_after),
        )

    def record_failure(self, district: DistrictConfig) -> None:
        """A connect failure, reset before the response head, or timeout."""
        circuit = self._circuits.setdefault(district.name, Circuit())
        circuit.failures += 1
        now = self._clock()
        if circuit.opened_at is not None:
            if circuit.state(now, self.cooldown) == "half-open":
                circuit.opened_at = now  # the probe (or a straggler) failed: another cool-down
                circuit.probe_until = None
            return
        if circuit.failures >= self.threshold:
            circuit.opened_at = now
            circuit.probe_until = None
            self._gauge(district.name, 1)
            log.warning(
                "circuit opened",
                extra={"fields": {"event": "circuit.open", "district": district.name,
                                  "failures": circuit.failures,
                                  "cooldown": self.cooldown}},
            )  # fmt: skip

    def record_neutral(self, district: DistrictConfig) -> None:
        """An outcome that says nothing of the district's health (it closed a connection it
        had accepted): the count stays; a half-open probe that met it hands the probe on."""
        circuit = self._circuits.get(district.name)
        if circuit is not None:
            circuit.probe_until = None

    def record_success(self, district: DistrictConfig) -> None:
        """A response head arrived (whatever its status: the district is answering)."""
        circuit = self._circuits.get(district.name)
        if circuit is None:
            return
        was_open = circuit.opened_at is not None
        circuit.failures = 0
        circuit.opened_at = None
        circuit.probe_until = None
        if was_open:
            self._gauge(district.name, 0)
            log.info(
                "circuit closed",
                extra={"fields": {"event": "circuit.close", "district": district.name}},
            )

    def state(self, district: DistrictConfig) -> str:
        """``closed``, ``open`` or ``half-open`` (shown in ``/admin/connections``)."""
        circuit = self._circuits.get(district.name)
        if circuit is None:
            return "closed"
        return circuit.state(self._clock(), self.cooldown)

    def _gauge(self, district: str, value: int) -> None:
        if self.metrics is not None:
            self.metrics.circuit_open.labels(district).set(value)
