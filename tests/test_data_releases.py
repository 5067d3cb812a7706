"""Paper-scale releases: pinned, hashed where checked, fetched through huggingface_hub from a local
stand-in for the hub (``HF_ENDPOINT`` or ``--base-url``), and converted into the offline loaders'
formats by converters checked here on hand-made rows."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.mmlu import COLUMNS
from harness.core.data import FetchOptions, read_csv, read_json, read_jsonl
from harness.core.errors import DataError
from harness.core.prefetch import prefetch
from harness.core.releases import RELEASES, load_release, medqa_jsonl, wildguardtest_json
from tests.source_server import SourceServer

MMLU = RELEASES["mmlu-release"]


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    """A local hub; hub access switched on for this test only (the suite runs with HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    running = SourceServer().start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield running
    running.stop()


def parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def mmlu_row(subject: str, question: str, answer: int) -> dict:
    return {"question": question, "subject": subject, "choices": [f"{question} w", "x", "y, z", 'say "q"'], "answer": answer}


def serve_mmlu(hub: SourceServer) -> dict[str, bytes]:
    splits = {
        "test": [mmlu_row("anatomy", "Bone, in the arm?", 2), mmlu_row("virology", "A virus", 0),
                 mmlu_row("anatomy", "Heart", 3)],
        "validation": [mmlu_row("anatomy", "Val q", 1)],
        "dev": [mmlu_row("virology", "Dev q", 0)],
    }
    served = {}
    for split, rows in splits.items():
        served[split] = parquet(rows)
        hub.add_hub_file("cais/mmlu", MMLU.source.revision, f"all/{split}-00000-of-00001.parquet", served[split])
    return served


def test_mmlu_release_from_the_hub_lands_in_the_offline_csv_layout(hub, tmp_path, monkeypatch) -> None:
    import hashlib

    monkeypatch.setenv("HF_ENDPOINT", hub.base_url)
    served = serve_mmlu(hub)
    assert prefetch(["mmlu-release"], None, tmp_path, options=FetchOptions(allow_unverified=True)) == ["mmlu-release"]
    out = tmp_path / "mmlu-release"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv")) == [
        "dev/virology_dev.csv", "test/anatomy_test.csv", "test/virology_test.csv", "val/anatomy_val.csv"]
    anatomy = read_csv(out / "test" / "anatomy_test.csv", header=COLUMNS)
    assert [(r["question"], r["C"], r["D"], r["answer"]) for r in anatomy] == [
        ("Bone, in the arm?", "y, z", 'say "q"', "C"), ("Heart", "y, z", 'say "q"', "D")]
    assert read_csv(out / "val" / "anatomy_val.csv", header=COLUMNS)[0]["answer"] == "B"
    receipt = (out / "SOURCE.txt").read_text()
    assert f"{hashlib.sha256(served['test']).hexdigest()}  all/test-00000-of-00001.parquet  UNVERIFIED" in receipt
    assert not list(tmp_path.glob("*.partial"))
    assert prefetch(["mmlu-release"], None, tmp_path, options=FetchOptions(allow_unverified=True)) == []


def test_an_unverified_release_is_refused_without_the_flag_and_fetches_nothing(hub, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.base_url)
    serve_mmlu(hub)
    with pytest.raises(DataError, match="--allow-unverified"):
        prefetch(["mmlu-release"], None, tmp_path)
    assert hub.requests == [] and not (tmp_path / "mmlu-release").exists()


def test_a_pinned_release_hash_mismatch_names_both_hashes_and_leaves_nothing(hub, tmp_path) -> None:
    wildguard = RELEASES["wildguardtest"]
    hub.add_hub_file(wildguard.source.repo, wildguard.source.revision, "test/wildguard_test.parquet", parquet([{"prompt": "x"}]))
    with pytest.raises(DataError) as err:
        prefetch(["wildguardtest"], None, tmp_path, options=FetchOptions(base_url=hub.base_url))
    assert f"expected {wildguard.files[0].sha256}, got " in str(err.value)
    assert "allenai/wildguardmix@d29c47f41c8b51348b5c8e8c81c039b3132b66d1" in str(err.value)
    assert not (tmp_path / "wildguardtest").exists() and not list((tmp_path / ".downloads").rglob("raw/*"))


def test_a_gated_release_says_how_to_accept_the_license_and_set_a_token(hub, tmp_path) -> None:
    wildguard = RELEASES["wildguardtest"]
    path = f"/huggingface.co/datasets/{wildguard.source.repo}/resolve/{wildguard.source.revision}/test/wildguard_test.parquet"
    hub.misbehave(path, failures=[403] * 5, error_code="GatedRepo")
    with pytest.raises(DataError) as err:
        prefetch(["wildguardtest"], None, tmp_path, options=FetchOptions(base_url=hub.base_url))
    message = str(err.value)
    assert "is gated" in message and "accept its license" in message and "HF_TOKEN" in message
    assert "https://huggingface.co/datasets/allenai/wildguardmix" in message


def test_hub_releases_say_how_to_turn_hub_access_on(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match=r"HF_HUB_OFFLINE=0 erosion prefetch --only beavertails-release"):
        prefetch(["beavertails-release"], None, tmp_path, options=FetchOptions(allow_unverified=True))


def test_beavertails_release_through_the_base_url_keeps_responses_and_is_safe(hub, tmp_path) -> None:
    beaver = RELEASES["beavertails-release"]
    pairs = [{"prompt": "p1", "response": "r1", "category": {"self_harm": True}, "is_safe": False},
             {"prompt": "p2", "response": "r2", "category": {"self_harm": False}, "is_safe": True}]
    content = gzip.compress("".join(json.dumps(p) + "\n" for p in pairs).encode())
    hub.add_hub_file(beaver.source.repo, beaver.source.revision, "round0/30k/test.jsonl.gz", content)
    options = FetchOptions(base_url=hub.base_url, allow_unverified=True)
    assert prefetch(["beavertails-release"], None, tmp_path, options=options) == ["beavertails-release"]
    rows = read_json(tmp_path / "beavertails-release" / "beavertails_30k.json")
    assert rows == [
        {"text": "p1", "label": "harmful", "source": "beavertails", "category": "{'self_harm': True}", "response": "r1",
         "is_safe": False},
        {"text": "p2", "label": "safe", "source": "beavertails", "category": "{'self_harm': False}", "response": "r2",
         "is_safe": True},
    ]


# ---- converters on hand-made rows ----------------------------------------------------------------------
def test_wildguardtest_converter_keeps_labelled_prompts_with_their_responses(tmp_path: Path) -> None:
    rows = [
        {"prompt": "how to x", "adversarial": False, "response": "no", "prompt_harm_label": "harmful",
         "response_refusal_label": "refusal", "response_harm_label": "unharmful", "subcategory": "cyberattack"},
        {"prompt": "hello", "adversarial": True, "response": "hi", "prompt_harm_label": "unharmful",
         "response_refusal_label": "compliance", "response_harm_label": "unharmful", "subcategory": "benign"},
        {"prompt": "unlabelled", "adversarial": False, "response": "?", "prompt_harm_label": None,
         "response_refusal_label": None, "response_harm_label": None, "subcategory": "others"},
    ]
    (tmp_path / "raw.parquet").write_bytes(parquet(rows))
    wildguardtest_json({"wildguard_test.parquet": tmp_path / "raw.parquet"}, tmp_path)
    out = read_json(tmp_path / "wildguard_full_benchmark.json")
    assert [(r["text"], r["label"], r["source"], r["response_refusal_label"]) for r in out] == [
        ("how to x", "harmful", "wildguardmix_cyberattack", "refusal"), ("hello", "safe", "wildguardmix_benign", "compliance")]


def test_medqa_converter_writes_train_and_test_in_the_offline_fields(tmp_path: Path) -> None:
    row = {"question": "Q?", "answer": "Nitro", "options": {"A": "a", "B": "b", "C": "c", "D": "Nitro"}, "meta_info": "step1",
           "answer_idx": "D", "metamap_phrases": ["q"]}
    for split, count in (("train", 2), ("test", 1)):
        (tmp_path / f"raw-{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for _ in range(count)))
    out = tmp_path / "out"
    out.mkdir()
    medqa_jsonl({"train.jsonl": tmp_path / "raw-train.jsonl", "test.jsonl": tmp_path / "raw-test.jsonl"}, out)
    train = read_jsonl(out / "train.jsonl")
    assert [r["realidx"] for r in train] == [0, 1] and len(read_jsonl(out / "test.jsonl")) == 1
    assert train[1] == {"realidx": 1, **row}  # the fields the medical domain reads: question, options, answer_idx


def test_every_release_is_pinned_to_a_commit_and_stands_for_an_offline_dataset() -> None:
    from harness.core.data import RAW_DATASETS

    for release in RELEASES.values():
        assert len(release.source.revision) == 40 and release.replaces in RAW_DATASETS and release.license
        assert len({f.name for f in release.files}) == len(release.files)
    assert sum(f.sha256 is not None for f in RELEASES["bbq-full"].files) == 6  # the offline copy's checked hashes
    assert len(RELEASES["bbq-full"].files) == 11


def test_a_failed_release_keeps_its_checked_raw_files_and_a_rerun_fetches_only_the_rest(hub, tmp_path) -> None:
    medqa = RELEASES["medqa-release"]
    row = {"question": "Q?", "answer": "a", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "A"}
    content = (json.dumps(row) + "\n").encode()
    hub.add_hub_file(medqa.source.repo, medqa.source.revision, "phrases_no_exclude_train.jsonl", content)
    options = FetchOptions(base_url=hub.base_url, allow_unverified=True)
    with pytest.raises(DataError, match="phrases_no_exclude_test.jsonl"):
        prefetch(["medqa-release"], None, tmp_path, options=options)
    assert not (tmp_path / "medqa-release").exists()
    hub.add_hub_file(medqa.source.repo, medqa.source.revision, "phrases_no_exclude_test.jsonl", content)
    before = len(hub.requests)
    assert prefetch(["medqa-release"], None, tmp_path, options=options) == ["medqa-release"]
    assert {p.rsplit("/", 1)[-1] for _, p, _ in hub.requests[before:]} == {"phrases_no_exclude_test.jsonl"}
    assert read_jsonl(tmp_path / "medqa-release" / "test.jsonl") == [{"realidx": 0, **row}]
    assert not (tmp_path / ".downloads" / "medqa-release").exists()


def test_a_github_release_is_copied_as_is_and_its_pinned_files_are_checked(hub, data_dir, tmp_path) -> None:
    """bbq-full from "GitHub": the six categories the mirror has must match their hashes; the rest
    are accepted (unverified) and recorded."""
    bbq = RELEASES["bbq-full"]
    for file in bbq.files:
        offline = data_dir / "bbq" / file.name
        hub.add(bbq.source.remote_url(file.remote), offline.read_bytes() if offline.exists() else b'{"example_id": 0}\n')
    options = FetchOptions(base_url=hub.base_url, allow_unverified=True)
    assert prefetch(["bbq-full"], None, tmp_path, options=options) == ["bbq-full"]
    out = tmp_path / "bbq-full"
    assert (out / "Age.jsonl").read_bytes() == (data_dir / "bbq" / "Age.jsonl").read_bytes()
    assert len(list(out.glob("*.jsonl"))) == 11
    receipt = (out / "SOURCE.txt").read_text()
    assert receipt.count("checked") == 6 and receipt.count("UNVERIFIED") == 5
    hub.misbehave(f"/raw.githubusercontent.com/nyu-mll/BBQ/{bbq.source.revision}/data/Religion.jsonl", corrupt=True)
    with pytest.raises(DataError, match="Religion.jsonl: sha256 mismatch"):
        prefetch(["bbq-full"], None, tmp_path / "again", options=options)
    assert not (tmp_path / "again" / "bbq-full").exists()


# ---- datasets.load_dataset at the pinned commit, against the loopback hub ----------------------------------
def serve_hub_listing(hub: SourceServer, repo: str, revision: str, served: dict[str, bytes]) -> None:
    """The hub API answers datasets needs beside the files: the repo at a revision and each folder's tree."""
    info = {"id": repo, "sha": revision, "private": False, "gated": False, "disabled": False, "tags": [], "cardData": {},
            "siblings": [{"rfilename": remote} for remote in served]}
    hub.files[f"/api/datasets/{repo}/revision/{revision}"] = json.dumps(info).encode()
    folders: dict[str, list[dict]] = {}
    for remote, content in served.items():
        parent, _, _ = remote.rpartition("/")
        folders.setdefault(parent, []).append({"type": "file", "path": remote, "size": len(content), "oid": "0" * 40})
        if parent:
            folders.setdefault("", []).append({"type": "directory", "path": parent, "oid": "1" * 40})
    for folder, entries in folders.items():
        hub.files[f"/api/datasets/{repo}/tree/{revision}" + (f"/{folder}" if folder else "")] = json.dumps(entries).encode()


@pytest.fixture
def datasets_hub(hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The loopback hub as datasets' and huggingface_hub's endpoint (both read it when imported), with
    a hub cache of this test's own (so every file is asked of the server, and ~/.cache stays untouched)."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "ENDPOINT", hub.base_url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.base_url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.base_url)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", hub.base_url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    return hub


def test_load_release_reads_the_pinned_commit_through_datasets(datasets_hub, tmp_path) -> None:
    served = serve_mmlu(datasets_hub)
    remotes = {f"all/{split}-00000-of-00001.parquet": content for split, content in served.items()}
    serve_hub_listing(datasets_hub, "cais/mmlu", MMLU.source.revision, remotes)
    tables = load_release(MMLU, tmp_path / "cache")
    assert sorted(tables) == ["dev", "test", "validation"]
    assert [(r["subject"], r["question"], r["answer"]) for r in tables["test"]] == [
        ("anatomy", "Bone, in the arm?", 2), ("virology", "A virus", 0), ("anatomy", "Heart", 3)]
    assert tables["validation"][0]["choices"] == ["Val q w", "x", "y, z", 'say "q"']
    # Every file was fetched at the pinned commit, and the tables are cached as Arrow.
    resolved = [path for method, path, _ in datasets_hub.requests
                if method == "GET" and "/resolve/" in path and path.endswith(".parquet")]
    assert resolved and all(f"/resolve/{MMLU.source.revision}/" in path for path in resolved)
    assert list((tmp_path / "cache").rglob("*.arrow"))


def test_load_release_refuses_what_is_not_one_table_per_hub_file(tmp_path) -> None:
    with pytest.raises(DataError, match="erosion prefetch --only bbq-full"):
        load_release(RELEASES["bbq-full"], tmp_path)  # GitHub, not the hub
    with pytest.raises(DataError, match="erosion prefetch --only legalbench-release"):
        load_release(RELEASES["legalbench-release"], tmp_path)  # hundreds of TSVs of different columns
    with pytest.raises(DataError, match="HF_HUB_OFFLINE=0"):
        load_release(MMLU, tmp_path)  # the suite runs offline
