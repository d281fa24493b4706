"""The machine's resources: the guard that waits for memory and CPU, peak memory, worker counts."""

from __future__ import annotations

import logging
import os
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from pipeline.errors import PipelineError

logger = logging.getLogger("luigi-interface")
LOAD_MINUTES = (1, 5, 15)
WAITING = "waiting for resources"
"""How the guard's status message starts while it holds a task."""


class WorkersError(PipelineError):
    """A worker count that cannot be used (zero or negative)."""


@dataclass(frozen=True)
class Limits:
    """Thresholds of the resource guard; a threshold of 0 turns its check off."""

    min_available_mb: int = 0
    max_load_percent: int = 0
    load_minutes: int = 1
    max_wait_s: float = 600
    poll_s: float = 5


@dataclass(frozen=True)
class Sample:
    """What the guard looks at: available memory and the load average per CPU."""

    available_mb: float
    load_percent: float


def cpu_count() -> int:
    """CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def sample(load_minutes: int = 1) -> Sample:
    """Available memory now and the load average over ``load_minutes`` as a percentage of the CPUs."""
    load = psutil.getloadavg()[LOAD_MINUTES.index(load_minutes)]
    return Sample(psutil.virtual_memory().available / 2**20, 100 * load / cpu_count())


def shortage(limits: Limits, now: Sample) -> str | None:
    """Why work should wait now, or None when the machine has room."""
    if limits.min_available_mb and now.available_mb < limits.min_available_mb:
        return f"available memory {now.available_mb:.0f} MiB < {limits.min_available_mb} MiB"
    if limits.max_load_percent and now.load_percent > limits.max_load_percent:
        return (f"CPU load over {limits.load_minutes} min {now.load_percent:.0f}% of {cpu_count()} CPUs "
                f"> {limits.max_load_percent}%")
    return None


def wait_for_resources(limits: Limits, say: Callable[[str], None], probe: Callable[[], Sample] | None = None,
                       sleep: Callable[[float], None] = time.sleep,
                       clock: Callable[[], float] = time.monotonic) -> float:
    """Wait while memory or CPU is short, at most ``limits.max_wait_s`` in total; return seconds waited.

    ``say`` receives a message saying why it waits (and when it gives up waiting), so the
    UI and the log show it. Work goes on after the bounded wait even if still short.
    """
    probe = probe or (lambda: sample(limits.load_minutes))
    start = clock()
    while (reason := shortage(limits, probe())) is not None:
        waited = clock() - start
        if waited >= limits.max_wait_s:
            say(f"going on after waiting {waited:.0f}s for resources: {reason}")
            return waited
        say(f"{WAITING} ({waited:.0f}s of at most {limits.max_wait_s:.0f}s): {reason}")
        sleep(max(0.0, min(limits.poll_s, limits.max_wait_s - waited)))
    return clock() - start


_HWM = re.compile(rb"^VmHWM:\s+(\d+) kB", re.MULTILINE)


def reset_peak_memory() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs``); False when unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """Peak RSS of this process since start or since :func:`reset_peak_memory`, in MiB."""
    try:
        with open("/proc/self/status", "rb") as handle:
            found = _HWM.search(handle.read())
        if found:
            return int(found.group(1)) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resolve_workers(requested: int | None, configured: int, cpus: int | None = None,
                    warn: Callable[[str], None] = logger.warning) -> int:
    """Worker processes to use: ``requested`` (``--workers``) over ``configured``, capped to the CPUs."""
    workers, source = (configured, "[processing] workers") if requested is None else (requested, "--workers")
    if workers < 1:
        raise WorkersError(f"{source} = {workers}: the number of workers must be 1 or more")
    cpus = cpus or cpu_count()
    if workers > cpus:
        warn(f"{source} = {workers} is more than the {cpus} CPUs of this machine; using {cpus} workers")
        return cpus
    return workers
