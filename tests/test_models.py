"""Model references: hub checkpoints are pinned to commits, and ``repo@commit`` is understood."""
from __future__ import annotations

import re
from pathlib import Path

from benchmarks.judges import JUDGES, ClassifierJudge
from harness.core.models import split_ref
from harness.orchestration.presets import PRESETS

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def test_split_ref(tmp_path: Path) -> None:
    assert split_ref("org/model@" + "a" * 40) == ("org/model", "a" * 40)
    assert split_ref("org/model") == ("org/model", None)
    folder = tmp_path / "weights@v2"
    folder.mkdir()
    assert split_ref(str(folder)) == (str(folder), None)  # an existing folder is never split


def test_every_hub_checkpoint_is_pinned() -> None:
    hub_presets = [p for p in PRESETS.values() if p.scale == "paper"]
    assert hub_presets
    for preset in hub_presets:
        refs = re.findall(r"\S+@\S+", preset.weights)
        assert len(refs) == 2, preset.weights  # chat and base
        assert all(COMMIT.match(split_ref(ref.rstrip(","))[1] or "") for ref in refs), preset.weights
    for judge in JUDGES.values():
        if issubclass(judge, ClassifierJudge):
            assert COMMIT.match(split_ref(judge.default_model)[1] or ""), judge.default_model


def test_world_builds_at_fixed_threads_whatever_the_machine(tiny_world) -> None:
    import json

    import torch

    from harness.orchestration.micro_world import BUILD_THREADS, build_threads

    build = json.loads((Path(tiny_world.chat).parent / "build.json").read_text())
    assert build["torch_threads"] == BUILD_THREADS  # whatever this machine's default is
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(BUILD_THREADS + 1)
        with build_threads():
            assert torch.get_num_threads() == BUILD_THREADS
        assert torch.get_num_threads() == BUILD_THREADS + 1  # the caller's setting comes back
    finally:
        torch.set_num_threads(before)
