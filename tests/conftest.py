"""Shared fixtures. Tests never touch the network; data comes from the prefetched data directory
(``make test`` prefetches it from ../shared/data) and models from the tiny micro world, built once
per session into a temporary cache (seconds)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread per test process: on two shared cores, more threads only contend.
torch.set_num_threads(1)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
TINY_SUITE = REPO / "tests" / "tiny-suite.yaml"


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prefetched data directory; prefetched into a temp folder from the mirror if absent."""
    from harness.core.data import RAW_DATASETS, default_mirror
    from harness.core.data import data_dir as configured
    from harness.core.prefetch import prefetch

    target = configured()
    if all((target / name).exists() for name in RAW_DATASETS):
        return target
    mirror = default_mirror()
    if mirror is None:
        pytest.exit("no data: run `make prefetch` or put ../shared/data beside the checkout", returncode=2)
    target = tmp_path_factory.mktemp("data")
    prefetch(list(RAW_DATASETS), mirror, target)
    os.environ["EROSION_DATA"] = str(target)
    return target


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """ModelHandle of the tiny world (tokenizer, base, chat), built once per session."""
    os.environ.setdefault("EROSION_CACHE", str(tmp_path_factory.mktemp("cache")))
    from harness.orchestration.presets import PRESETS

    return PRESETS["tiny"].prepare()


@pytest.fixture(scope="session")
def tiny_lm(tiny_world):
    from harness.core.models import load_local

    return load_local(tiny_world.chat, tiny_world.tokenizer, tiny_world.max_length)


@pytest.fixture
def tiny_suite(tiny_world):
    from harness.orchestration.config import load_suite

    return load_suite(TINY_SUITE)
