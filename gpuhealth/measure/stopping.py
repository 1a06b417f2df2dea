"""Stopping a grade at the next kernel: a signal, the supervisor or a dead parent sets the flag, and
every work call of the backend checks it first (tidy-up and read-only calls never stop)."""

from __future__ import annotations

import os
import signal
from typing import Any

from gpuhealth.measure.backends.base import Backend

STOP_REASONS = {
    int(signal.SIGTERM): "stopped by SIGTERM",
    int(signal.SIGINT): "interrupted (Ctrl-C)",
    int(signal.SIGHUP): "stopped by SIGHUP",
}


def stop_reason(signum: int) -> str:
    return STOP_REASONS.get(signum, f"stopped by signal {signum}")


class StopRequested(BaseException):
    """Raised at the next backend call once a stop is requested. A BaseException, so that no
    handler of card errors (execute() catches DeviceError) takes it for a failure of the card."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StopFlag:
    """Why the run should stop, if it should: set by a signal handler (request), by the fleet
    supervisor through a shared integer (a signal number; multiprocessing.Value), or found when
    the supervising process has died (the worker's parent pid changed)."""

    def __init__(self, shared: Any = None, parent_pid: int | None = None) -> None:
        self._reason: str | None = None
        self._shared = shared
        self._parent_pid = parent_pid

    def request(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason

    def reason(self) -> str | None:
        if self._reason is None:
            if self._shared is not None and self._shared.value:
                self._reason = stop_reason(int(self._shared.value))
            elif self._parent_pid is not None and os.getppid() != self._parent_pid:
                self._reason = "stopped: the supervising gpuhealth process died"
        return self._reason


# Backend calls that tidy up or only read state: never interrupted by a stop.
_UNSTOPPABLE = frozenset(
    {
        "close",
        "free",
        "host_free",  # issue 14: pinned host memory of the pcie test
        "end_test",
        "start_telemetry",
        "stop_telemetry",
        "drain_telemetry",
        "telemetry",
        "clock_s",
        "counters",
        "xid_events",
        "identity",
        "device_info",
        "processes",
        "memory_free_bytes",
        "settings",
    }
)


class _StoppableBackend:
    """The backend as the tests see it: every work call first checks the stop flag."""

    def __init__(self, inner: Backend, stop: StopFlag) -> None:
        self._inner = inner
        self._stop = stop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in _UNSTOPPABLE or not callable(attr):
            return attr
        stop = self._stop

        def guarded(*args: Any, **kwargs: Any) -> Any:
            why = stop.reason()
            if why:
                raise StopRequested(why)
            return attr(*args, **kwargs)

        return guarded
