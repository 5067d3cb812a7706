"""Fault injection for the kill-and-resume tests: ``EROSION_KILL_AT=point:n`` makes the process
SIGKILL itself the n-th time it reaches ``point`` (e.g. ``train_step:7``, ``write_step:2``).
Unset (always, outside tests) it costs one dictionary lookup."""
from __future__ import annotations

import os
import signal
from collections import Counter

_SPEC = os.environ.get("EROSION_KILL_AT", "")
_POINT, _, _COUNT = _SPEC.partition(":")
_seen: Counter[str] = Counter()


def reached(point: str) -> None:
    if not _SPEC or point != _POINT:
        return
    _seen[point] += 1
    if _seen[point] == int(_COUNT or 1):
        os.kill(os.getpid(), signal.SIGKILL)
