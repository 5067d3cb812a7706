"""Paper scale: the official releases where they differ from the micro default's offline derivatives.

Each release is pinned (a hub or GitHub commit), hashed where the hash could be checked, and turned
into the exact layout and format of the offline dataset it stands for by a small converter, in its
own folder (``mmlu-release/`` beside ``mmlu/``), so the micro default keeps reading the small files
and its numbers do not move. A file whose sha256 nobody here could check is declared ``None``
("unverified"): prefetch refuses it unless ``--allow-unverified`` is given, and then records the
sha256 it accepted in the release folder's ``SOURCE.txt`` so it can be pinned.

A release lands whole or not at all: the raw files are checked into ``.downloads/NAME/``, the
converter writes ``NAME.partial/``, and only a finished folder is renamed to ``NAME/`` (then the raw
files are removed; a rerun after a failure fetches only the raw files not yet checked).
"""
from __future__ import annotations

import csv
import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.data import DOWNLOADS, FetchOptions, declared_files, license_marks, read_jsonl
from harness.core.errors import DataError
from harness.core.sources import Source, fetch_file, fetch_hub, land, sha256_of

if TYPE_CHECKING:
    import datasets

MMLU_LETTERS = ("A", "B", "C", "D")
MMLU_SPLITS = {"test": "test", "validation": "val", "dev": "dev"}  # release split -> offline folder


@dataclass(frozen=True)
class ReleaseFile:
    """One published file: its path in the source, the name a converter knows it by, its sha256."""

    remote: str
    name: str
    sha256: str | None  # None: unverified (see the module docstring)


@dataclass(frozen=True)
class Release:
    name: str
    replaces: str
    role: str
    license: str
    source: Source
    files: tuple[ReleaseFile, ...]
    convert: Callable[[dict[str, Path], Path], None]
    note: str
    noncommercial: bool = False


# ---- converters: raw files (by name) -> the offline dataset's layout in ``out`` ---------------------
def copy_as_is(raw: dict[str, Path], out: Path) -> None:
    """Releases already in the offline format (BBQ, LegalBench TSVs, CodeAlpaca JSON)."""
    for name, path in raw.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / name)


def mmlu_csvs(raw: dict[str, Path], out: Path) -> None:
    """cais/mmlu parquet (question, subject, choices[4], answer index) -> hendrycks headerless CSVs
    ``{test,val,dev}/<subject>_<split>.csv`` with rows question,A,B,C,D,letter in release order."""
    import pyarrow.parquet as pq

    for split, folder in MMLU_SPLITS.items():
        by_subject: dict[str, list[list[str]]] = {}
        for row in pq.read_table(raw[f"{split}.parquet"]).to_pylist():
            by_subject.setdefault(row["subject"], []).append([row["question"], *row["choices"], MMLU_LETTERS[row["answer"]]])
        (out / folder).mkdir(parents=True, exist_ok=True)
        for subject, rows in by_subject.items():
            with open(out / folder / f"{subject}_{folder}.csv", "w", encoding="utf-8", newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerows(rows)


def wildguardtest_json(raw: dict[str, Path], out: Path) -> None:
    """WildGuardTest parquet -> the offline ``wildguard_full_benchmark.json`` rows (text, label
    harmful/safe, source wildguardmix_<subcategory>), keeping the response and its two labels.
    Rows without a prompt-harm label (the release leaves a few unlabelled) are dropped."""
    import pyarrow.parquet as pq

    rows = [
        {"text": r["prompt"], "label": "harmful" if r["prompt_harm_label"] == "harmful" else "safe",
         "source": f"wildguardmix_{r['subcategory']}", "adversarial": r["adversarial"], "response": r["response"],
         "response_harm_label": r["response_harm_label"], "response_refusal_label": r["response_refusal_label"]}
        for r in pq.read_table(raw["wildguard_test.parquet"]).to_pylist()
        if r["prompt_harm_label"] in ("harmful", "unharmful")
    ]
    (out / "wildguard_full_benchmark.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")


def beavertails_json(raw: dict[str, Path], out: Path) -> None:
    """BeaverTails 30k_test (gzipped JSON lines of prompt, response, category{14 flags}, is_safe) ->
    the offline ``beavertails_30k.json`` rows (text, label, source, category) plus response, is_safe.
    The label is the QA pair's: harmful when the response is not safe."""
    with gzip.open(raw["30k_test.jsonl.gz"], "rt", encoding="utf-8") as handle:
        pairs = [json.loads(line) for line in handle if line.strip()]
    rows = [{"text": p["prompt"], "label": "safe" if p["is_safe"] else "harmful", "source": "beavertails",
             "category": str(p["category"]), "response": p["response"], "is_safe": p["is_safe"]} for p in pairs]
    (out / "beavertails_30k.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")


def medqa_jsonl(raw: dict[str, Path], out: Path) -> None:
    """GBaker MedQA-USMLE-4-options (question, answer, options{A-D}, meta_info, answer_idx,
    metamap_phrases) -> the offline medagents layout: the same fields with ``realidx`` first, as
    ``train.jsonl`` and ``test.jsonl`` (the release's own train split, no carving needed)."""
    for split in ("train", "test"):
        rows = read_jsonl(raw[f"{split}.jsonl"])
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for index, row in enumerate(rows):
                handle.write(json.dumps({"realidx": index, **row}, ensure_ascii=False) + "\n")


# ---- the table -------------------------------------------------------------------------------------
def _bbq_files() -> tuple[ReleaseFile, ...]:
    """All 11 categories; the 6 the offline copy has carry its checked hashes."""
    checked = {f.relative: f.sha256 for f in declared_files("bbq")}
    categories = ("Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance", "Race_ethnicity",
                  "Race_x_SES", "Race_x_gender", "Religion", "SES", "Sexual_orientation")
    return tuple(ReleaseFile(f"data/{c}.jsonl", f"{c}.jsonl", checked.get(f"{c}.jsonl")) for c in categories)


def _legalbench_files() -> tuple[ReleaseFile, ...]:
    """The train and test TSVs of every task the offline HEAD snapshot has (tests live only on the hub)."""
    tasks = sorted({f.relative.split("/")[2] for f in declared_files("legalbench") if f.relative.startswith("head/tasks/")})
    return tuple(ReleaseFile(f"data/{t}/{split}.tsv", f"tasks/{t}/{split}.tsv", None)
                 for t in tasks for split in ("train", "test"))


RELEASES: dict[str, Release] = {
    r.name: r
    for r in [
        Release("bbq-full", "bbq", "safety eval", "CC-BY-4.0",
                Source("github", "nyu-mll/BBQ", "bea11bd97d79217245b5871acd247b9d6eb24598", "data"), _bbq_files(), copy_as_is,
                "all 11 categories (58,492 rows); the 5 large ones are unverified"),
        Release("mmlu-release", "mmlu", "general eval", "MIT",
                Source("hub", "cais/mmlu", "c30699e8356da336a370243923dbaf21066bb9fe"),
                tuple(ReleaseFile(f"all/{s}-00000-of-00001.parquet", f"{s}.parquet", None) for s in MMLU_SPLITS), mmlu_csvs,
                "released MMLU (14,042 test questions) instead of the pre-release snapshot"),
        Release("wildguardtest", "wildguard", "safety eval (prompt + response)", "ODC-BY (gated: accept the terms on the hub)",
                Source("hub", "allenai/wildguardmix", "d29c47f41c8b51348b5c8e8c81c039b3132b66d1", gated=True),
                (ReleaseFile("test/wildguard_test.parquet", "wildguard_test.parquet",
                             "6ccc2909c1ae6d41424fac69f1fc32535b1de39cb8f80407d81e8bc64a0bebca"),), wildguardtest_json,
                "official WildGuardTest (1,725 items with responses); sha256 as pinned by a third-party project, "
                "revision d29c47f from another (not checked here)"),
        Release("beavertails-release", "beavertails", "safety calibration (harmful + benign QA pairs)", "CC BY-NC 4.0",
                Source("hub", "PKU-Alignment/BeaverTails", "8401fe609d288129cc684a9b3be6a93e41cfe678"),
                (ReleaseFile("round0/30k/test.jsonl.gz", "30k_test.jsonl.gz", None),), beavertails_json,
                "official 30k_test QA pairs with responses and is_safe", noncommercial=True),
        Release("medqa-release", "medqa", "medical domain (train) + eval (test)", "CC-BY-4.0 (GBaker repackaging of MedQA, MIT)",
                Source("hub", "GBaker/MedQA-USMLE-4-options", "0fb93dd23a7339b6dcd27e241cb9b5eca62d4d18"),
                (ReleaseFile("phrases_no_exclude_train.jsonl", "train.jsonl", None),
                 ReleaseFile("phrases_no_exclude_test.jsonl", "test.jsonl", None)), medqa_jsonl,
                "MedQA-USMLE 4-option with its train split (10,178) and test (1,273); file names unverified"),
        Release("legalbench-release", "legalbench", "legal domain (train) + eval (test)",
                "per task: mostly CC BY 4.0; some CC BY-NC(-SA) 4.0, CC BY-SA 4.0, MIT",
                Source("hub", "nguha/legalbench", "daec8237410aa23e3faf4bc41ad8b3a7e1696826"), _legalbench_files(), copy_as_is,
                "released LegalBench train+test per task (HEAD task names)", noncommercial=True),
        Release("codealpaca-20k", "codealpaca", "code domain (train)", "CC BY-NC 4.0 (data)",
                Source("github", "sahil280114/codealpaca", "2f78ddc5c682ed6738ad092bbbfa59ba915afcb0", "data"),
                (ReleaseFile("data/code_alpaca_20k.json", "code_alpaca_20k.json", None),), copy_as_is,
                "the full 20k instructions", noncommercial=True),
    ]
}


# ---- straight from the hub as Arrow tables ---------------------------------------------------------------
ARROW_FORMATS = (".parquet", ".jsonl", ".jsonl.gz", ".json")  # one table per file; datasets picks the reader


def split_name(file: ReleaseFile) -> str:
    """``test.parquet`` -> ``test``, ``30k_test.jsonl.gz`` -> ``30k_test``: the file's split in load_release."""
    return file.name.split("/")[-1].split(".")[0]


def load_release(release: Release, cache_dir: Path) -> datasets.DatasetDict:
    """A hub release at its pinned commit as Arrow tables, one split per file (split_name), through
    ``datasets.load_dataset(repo, revision=<pinned>, data_files=...)``. datasets keeps them as Arrow
    files under ``cache_dir`` and memory-maps them, so a large set is neither read into memory nor
    fetched twice. The endpoint is the hub's, or ``HF_ENDPOINT`` (read when datasets is imported).
    Prefetch keeps fetching the raw files: it checks their sha256 and converts them to the offline layout."""
    import datasets

    if release.source.kind != "hub" or not all(f.remote.endswith(ARROW_FORMATS) for f in release.files):
        raise DataError(f"Release {release.name!r} ({release.source.describe()}) is not one table per hub file "
                        f"(parquet or JSON lines). Fix: read it through `erosion prefetch --only {release.name}`.")
    if datasets.config.HF_HUB_OFFLINE:
        raise DataError(f"Release {release.name!r} comes from {release.source.describe()}, but hub access is off "
                        f"(HF_HUB_OFFLINE=1, the erosion default). Fix: run with HF_HUB_OFFLINE=0.")
    files = {split_name(f): f.remote for f in release.files}
    return datasets.load_dataset(release.source.repo, revision=release.source.revision, data_files=files,
                                 cache_dir=str(cache_dir))


# ---- prefetch ----------------------------------------------------------------------------------------
def prefetch_release(release: Release, dest: Path, force: bool, options: FetchOptions) -> bool:
    """Fetch, check and convert one release into ``dest/NAME``; False when it was already there."""
    target = dest / release.name
    if target.is_dir() and not force:
        return False
    unverified = [f.remote for f in release.files if f.sha256 is None]
    if unverified and not options.allow_unverified:
        raise DataError(
            f"Release {release.name!r} ({release.source.describe()}) has {len(unverified)} file(s) whose sha256 is not "
            f"pinned yet (e.g. {unverified[0]}): nobody could check them offline. Fix: rerun with --allow-unverified "
            f"to accept the bytes at the pinned revision; their sha256 is recorded in {target}/SOURCE.txt so you can "
            f"pin it in harness/core/releases.py."
        )
    raw, hashes = _fetch_raw(release, dest, options)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    release.convert(raw, staging)
    (staging / "SOURCE.txt").write_text(_receipt(release, hashes), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    shutil.rmtree(dest / DOWNLOADS / release.name)  # converted: the raw files' hashes are in SOURCE.txt
    return True


def _fetch_raw(release: Release, dest: Path, options: FetchOptions) -> tuple[dict[str, Path], dict[str, str]]:
    """Each raw file checked into ``.downloads/NAME/raw/``; returns paths and the sha256 each had."""
    folder = dest / DOWNLOADS / release.name
    source = release.source
    raw, hashes = {}, {}
    for file in release.files:
        path = raw[file.name] = folder / "raw" / file.name
        what = f"release {release.name!r} file {file.remote}"
        if path.exists():  # checked by an earlier run that failed later
            hashes[file.name] = sha256_of(path)
        elif source.kind == "hub":
            fetched = fetch_hub(source, file.remote, folder / "hub", what, release.name, options.base_url)
            hashes[file.name] = land(fetched, path, file.sha256, what, source.describe())
        else:
            hashes[file.name] = fetch_file(source.remote_url(file.remote, options.base_url), path, file.sha256,
                                           folder / "parts" / (file.name + ".part"), what, source.describe(),
                                           options.attempts, options.backoff)
    return raw, hashes


def _receipt(release: Release, hashes: dict[str, str]) -> str:
    lines = [f"{release.name}: {release.source.describe()}", f"license: {release.license}", f"note: {release.note}", ""]
    lines += [f"{hashes[f.name]}  {f.remote}  {'checked' if f.sha256 else 'UNVERIFIED (accepted with --allow-unverified)'}"
              for f in release.files]
    return "\n".join(lines) + "\n"


def release_listing(dest: Path) -> list[dict[str, str]]:
    rows = []
    for release in RELEASES.values():
        pinned = sum(f.sha256 is not None for f in release.files)
        if len(release.files) == 1:
            sha256 = release.files[0].sha256 or "unverified"
        else:
            sha256 = (f"{pinned} of {len(release.files)} files pinned"
                      + (", the rest unverified" if pinned < len(release.files) else ""))
        rows.append({
            "name": release.name, "scale": f"paper (for {release.replaces})",
            "present": "yes" if (dest / release.name).is_dir() else "no", "size": "unknown",
            "license": license_marks(release.license, release.noncommercial, release.source.gated),
            "source": f"{release.source.describe()}: {release.note}", "sha256": sha256,
        })
    return rows
