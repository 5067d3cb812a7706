"""Which processes a sandboxed program left behind: a /proc scan shared by the sandbox tests."""
from __future__ import annotations

import os
from pathlib import Path


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
