"""Shared by the sandbox tests: which processes a sandboxed program left behind (a /proc scan), and
the gate in front of every test that runs code bypassing the Python guards."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.sandbox import native_code_refusal


def live_processes(uids: set[int]) -> list[str]:
    """'PID uid UID' for every live (not zombie) process owned by one of ``uids``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry.name}/status").read_text().splitlines()
        except OSError:  # the process ended while we looked
            continue
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        uid = fields.get("Uid", "").split()[:1]
        if uid and int(uid[0]) in uids and fields.get("State", "").split()[:1] != ["Z"]:
            found.append(f"{entry.name} uid {uid[0]}")
    return found


def skip_unless_fenced(refusal: str, who: str = "this harness") -> None:
    """Skip, with the probe's reason, where hostile native code would not be fenced by the kernel:
    it could otherwise signal (``kill(-1, SIGKILL)``) or fork-bomb the host's own processes."""
    if refusal:
        pytest.skip(f"hostile native code is not run for {who} here: {refusal}")


@pytest.fixture(scope="session")
def native_code_fenced() -> None:
    """Requested (before anything runs) by every test whose program bypasses the Python guards: the
    probe must have confirmed namespaces and a dropped uid, and such tests require namespaces."""
    skip_unless_fenced(native_code_refusal())
