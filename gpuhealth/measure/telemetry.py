"""Background telemetry sampling and the guards that read it.

ThreadSampler polls a read function (NVML on a real card) on a daemon thread; the simulated card
samples on its virtual clock instead and does not use it. Guards look at samples and say why a test
must stop; they never touch a backend.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpuhealth.models import TelemetrySample
from gpuhealth.throttle import THERMAL_REASON_BITS, reason_names


class ThreadSampler:
    """Calls read() every interval_s on a daemon thread and keeps the samples until drained.

    A read that raises stops the sampler and is re-raised by the next drain(), so that a card lost
    between kernels is noticed by the test that is running.
    """

    def __init__(self, read: Callable[[], TelemetrySample], interval_s: float) -> None:
        self._read = read
        self._interval_s = interval_s
        self._samples: list[TelemetrySample] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpuhealth-telemetry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sample = self._read()
            except Exception as exc:  # handed to the test thread by drain()
                with self._lock:
                    self._error = exc
                return
            with self._lock:
                self._samples.append(sample)
            self._stop.wait(self._interval_s)

    def drain(self) -> tuple[TelemetrySample, ...]:
        with self._lock:
            samples, self._samples = tuple(self._samples), []
            error, self._error = self._error, None
        if error is not None:
            raise error
        return samples

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5 * self._interval_s + 1.0)


@dataclass(frozen=True)
class ThermalGuard:
    """Stop a load before the card reaches its slowdown threshold (less a margin)."""

    slowdown_c: float | None
    margin_c: float = 3.0

    @property
    def limit_c(self) -> float | None:
        return None if self.slowdown_c is None else self.slowdown_c - self.margin_c

    def check(self, samples: Sequence[TelemetrySample]) -> str | None:
        limit = self.limit_c
        for sample in samples:
            temperature = sample.temperature_c
            if limit is not None and temperature is not None and temperature >= limit:
                return (
                    f"GPU temperature {sample.temperature_c:.0f} °C reached the guard "
                    f"{limit:.0f} °C ({self.slowdown_c:.0f} °C slowdown − {self.margin_c:.0f})"
                )
            reasons = sample.clocks_event_reasons
            if reasons is not None and reasons & THERMAL_REASON_BITS:
                return "thermal slowdown reported by the driver: " + ", ".join(
                    reason_names(reasons & THERMAL_REASON_BITS)
                )
        return None
