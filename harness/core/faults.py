"""Fault injection for the kill-and-resume tests: ``EROSION_KILL_AT=point:n`` makes the process
SIGKILL itself the n-th time it reaches ``point`` (e.g. ``train_step:7``, ``before_rename:2``);
``EROSION_KILL_RUN=text`` limits that to runs whose id contains ``text`` (the runner sets
``scope`` to the run id). Unset (always, outside tests) it costs one string comparison."""
from __future__ import annotations

import os
import signal
from collections import Counter

_SPEC = os.environ.get("EROSION_KILL_AT", "")
_POINT, _, _COUNT = _SPEC.partition(":")
_RUN = os.environ.get("EROSION_KILL_RUN", "")
_seen: Counter[str] = Counter()
scope = ""  # the id of the run this process is working on


def reached(point: str) -> None:
    if not _SPEC or point != _POINT or _RUN not in scope:
        return
    _seen[point] += 1
    if _seen[point] == int(_COUNT or 1):
        os.kill(os.getpid(), signal.SIGKILL)
