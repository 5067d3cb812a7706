"""The offline data layer: one data directory that every loader reads, filled by ``erosion prefetch``.

``prefetch`` copies each dataset from a local mirror folder (e.g. ``../shared/data``, whose
PROVENANCE.md files say where every byte came from) or, when online, downloads it from the
Hugging Face hub at a pinned revision. Loaders never touch the network: a missing dataset is a
:class:`DataError` naming the dataset, the expected file and the prefetch command.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.errors import DataError

csv.field_size_limit(10**8)


@dataclass(frozen=True)
class RawDataset:
    """A dataset as shipped: the folder name in the mirror and the files a loader needs."""

    name: str
    files: tuple[str, ...]
    role: str
    hub_id: str | None = None
    hub_revision: str | None = None


RAW_DATASETS: dict[str, RawDataset] = {
    d.name: d
    for d in [
        RawDataset("harmbench", ("harmbench_behaviors_text_test.csv", "harmbench_behaviors_text_val.csv"), "safety eval (test) / CSM probe (val)"),
        RawDataset("truthfulqa", ("validation.json",), "safety eval"),
        RawDataset("bbq", ("Age.jsonl", "Disability_status.jsonl", "Nationality.jsonl", "Physical_appearance.jsonl", "Religion.jsonl", "Sexual_orientation.jsonl"), "safety eval"),
        RawDataset("medqa", ("test.jsonl",), "medical domain (train/eval carved)"),
        RawDataset("legalbench", ("386c97e/tasks", "head/tasks"), "legal domain"),
        RawDataset("codealpaca", ("code_alpaca_2k.json", "new_codealpaca.json"), "code domain (train)"),
        RawDataset("finance", ("sent_train.csv", "sent_valid.csv"), "finance domain"),
        RawDataset("gsm8k", ("train.jsonl", "test.jsonl"), "math domain"),
        RawDataset("mmlu", ("test", "dev"), "general eval"),
        RawDataset("xstest", ("xstest_prompts.csv",), "over-refusal eval"),
        RawDataset("wildguard", ("wildguard_full_benchmark.json",), "safety eval"),
        RawDataset("advbench", ("harmful_behaviors.csv",), "safety calibration (harmful)"),
        RawDataset("beavertails", ("beavertails_30k.json",), "safety calibration (harmful + benign)"),
        RawDataset("strongreject", ("strongreject_dataset.csv",), "safety calibration (harmful)"),
    ]
}


def default_data_dir() -> Path:
    if env := os.environ.get("EROSION_DATA"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "erosion-bench" / "data"


def default_mirror() -> Path | None:
    """``../shared/data`` beside the checkout, if it is there."""
    candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def data_dir() -> Path:
    return default_data_dir()


def dataset_file(name: str, relative: str) -> Path:
    """Path of one file of a prefetched dataset, or a DataError that says how to get it."""
    path = data_dir() / name / relative
    if not path.exists():
        raise DataError(
            f"Dataset {name!r} is missing: {path} does not exist. "
            f"Fix: run `erosion prefetch` (or `erosion prefetch --mirror ../shared/data`), "
            f"or point EROSION_DATA at a data directory that has it."
        )
    return path


# ---- prefetch -----------------------------------------------------------------------------------
def prefetch(names: Iterable[str], mirror: Path | None, dest: Path | None = None, force: bool = False) -> list[str]:
    """Materialise datasets into the data directory; returns the names that were copied."""
    dest = dest or data_dir()
    copied = []
    for name in names:
        spec = RAW_DATASETS.get(name)
        if spec is None:
            raise DataError(f"Unknown dataset {name!r}. Fix: choose from {', '.join(sorted(RAW_DATASETS))}.")
        target = dest / name
        if not force and all((target / f).exists() for f in spec.files):
            continue
        if mirror is not None:
            _copy_from_mirror(spec, mirror, target)
        elif spec.hub_id:
            _download_from_hub(spec, target)
        else:
            raise DataError(
                f"Dataset {name!r} has no local mirror and no pinned hub source. "
                f"Fix: pass --mirror PATH to a folder holding {name}/ (e.g. ../shared/data)."
            )
        copied.append(name)
    return copied


def _copy_from_mirror(spec: RawDataset, mirror: Path, target: Path) -> None:
    source = mirror / spec.name
    missing = [f for f in spec.files if not (source / f).exists()]
    if missing:
        raise DataError(
            f"Mirror {mirror} lacks {spec.name}/{missing[0]}. Fix: pass the folder that holds the "
            f"erosion-bench data mirror (with {spec.name}/ inside) to --mirror."
        )
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def _download_from_hub(spec: RawDataset, target: Path) -> None:
    """Paper scale, online only: save a pinned hub revision as JSON lines."""
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DataError(f"Dataset {spec.name!r} is not in the data directory and the hub is offline. Fix: pass --mirror.")
    import datasets

    dataset = datasets.load_dataset(spec.hub_id, revision=spec.hub_revision)
    target.mkdir(parents=True, exist_ok=True)
    for split, rows in dataset.items():
        rows.to_json(str(target / f"{split}.jsonl"))


# ---- readers --------------------------------------------------------------------------------------
def json_problem(err: json.JSONDecodeError) -> str:
    """The decoder's complaint with its column ("Invalid control character at" alone ends mid-sentence)."""
    return f"{err.msg.removesuffix(' at')} at column {err.colno}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {number} is not valid JSON ({json_problem(err)}). Fix: re-run `erosion prefetch --force`.") from None
    return rows


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({json_problem(err)} at line {err.lineno}). Fix: re-run `erosion prefetch --force`.") from None


def read_csv(path: Path, required: Iterable[str] = (), delimiter: str = ",", header: list[str] | None = None) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, fieldnames=header)
        rows = list(reader)
        columns = reader.fieldnames or []
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (found {columns}). Fix: re-run `erosion prefetch --force`.")
    return rows


def require_fields(path: Path, rows: list[dict[str, Any]], fields: Iterable[str]) -> None:
    for number, row in enumerate(rows, 1):
        missing = [f for f in fields if f not in row]
        if missing:
            raise DataError(f"{path}: row {number} lacks field(s) {missing}. Fix: re-run `erosion prefetch --force`.")


# ---- examples and overlap keys ---------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One chat turn to train on: ``response`` is the assistant's answer (the only tokens with loss)."""

    prompt: str
    response: str
    source: str


_NON_WORD = re.compile(r"[^a-z0-9]+")


def prompt_key(text: str) -> str:
    """Overlap key: case, punctuation and spacing do not make a prompt new."""
    return hashlib.sha256(_NON_WORD.sub(" ", text.lower()).strip().encode()).hexdigest()


def stable_bucket(text: str, buckets: int = 100) -> int:
    """A deterministic bucket for train/eval carving (independent of Python's hash seed)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % buckets
