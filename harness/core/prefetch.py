"""Fetching datasets into the data directory: the micro default's raw datasets (copied from a mirror
or downloaded from their pinned sources, ``harness/core/data.py``) and the paper-scale releases
(downloaded and converted, ``harness/core/releases.py``); what ``erosion prefetch`` runs."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from harness.core.data import (
    FILE_TABLE,
    RAW_DATASETS,
    FetchOptions,
    copy_from_mirror,
    data_dir,
    declared_files,
    fetch_from_sources,
    human_size,
    is_present,
    license_marks,
)
from harness.core.errors import DataError
from harness.core.releases import RELEASES, prefetch_release, release_listing

DEFAULT_FETCH_OPTIONS = FetchOptions()  # frozen, so every call may share it


def prefetch(names: Iterable[str], mirror: Path | None, dest: Path | None = None, force: bool = False,
             options: FetchOptions = DEFAULT_FETCH_OPTIONS) -> list[str]:
    """Materialise datasets into the data directory; returns the names that were copied or fetched.

    With a mirror, datasets are copied from it; without one, fetched from their pinned sources. The
    paper-scale releases (:mod:`harness.core.releases`) always come from their sources and are converted.
    """
    dest = dest or data_dir()
    done = []
    for name in names:
        if name in RELEASES:
            if prefetch_release(RELEASES[name], dest, force, options):
                done.append(name)
            continue
        spec = RAW_DATASETS.get(name)
        if spec is None:
            known = ", ".join([*sorted(RAW_DATASETS), *sorted(RELEASES)])
            raise DataError(f"Unknown dataset {name!r}. Fix: choose from {known} (see `erosion prefetch --list`).")
        target = dest / name
        if not force and is_present(name, dest):
            continue
        if mirror is not None:
            copy_from_mirror(spec, mirror, target)
        else:
            fetch_from_sources(spec, dest, force, options)
        done.append(name)
    return done


def dataset_listing(dest: Path) -> list[dict[str, str]]:
    """One row per dataset (micro default first, then the paper-scale releases) for ``--list``."""
    rows = []
    for spec in RAW_DATASETS.values():
        files = declared_files(spec.name)
        have = sum((dest / spec.name / f.relative).exists() for f in files)
        rows.append({
            "name": spec.name, "scale": "micro",
            "present": "yes" if have == len(files) else "no" if have == 0 else f"partial ({have}/{len(files)})",
            "size": human_size(sum(f.size for f in files)),
            "license": license_marks(spec.license, spec.noncommercial, any(s.gated for s in spec.sources)),
            "source": "; ".join(s.describe() for s in spec.sources),
            "sha256": files[0].sha256 if len(files) == 1 else f"{len(files)} files, each in harness/core/{FILE_TABLE.name}",
        })
    return rows + release_listing(dest)


# ---- readers --------------------------------------------------------------------------------------
