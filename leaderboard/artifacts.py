"""What the renderer writes besides tables: a plot file and what the pages say about it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Plot:
    name: str  # file stem, unique within the plots folder
    path: Path
    model: str
    scale: str
    title: str
    caption: str
