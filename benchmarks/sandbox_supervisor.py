"""S and U, the sandbox's supervisor and the fenced program (threat model: ``sandbox.py``).

Run by path (``python -I -B sandbox_supervisor.py CONFIG_JSON``). S enters the namespaces the
kernel allows and forks U, writes one JSON line of the layers in force to stdout, and kills U
(its PID namespace) when the harness closes stdin or at the deadline. U fences itself (mounts,
limits, identity, the Python guards) before it reads the program, then answers the tester's calls
of the program's entry point. Standard library only.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.sandbox_codec import Lines, decode, encode, send
else:  # run by path with -I, this folder is not on sys.path (and the package's __init__ must not load)
    _HERE = os.path.dirname(os.path.realpath(__file__))
    sys.path.insert(0, _HERE)
    from sandbox_codec import Lines, decode, encode, send

    sys.path.remove(_HERE)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 442, -100, 0x8000, 1, 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
NOBODY = 65534

# What the Python guards refuse (captured into install_guards' closure: rebinding these later is no way round).
BLOCKED_EVENT_PREFIXES = ("socket.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
                          "os.system", "subprocess.", "os.kill", "os.killpg", "os.link", "gc.get_", "pty.",
                          "resource.setrlimit", "resource.prlimit", "os.chroot")
BLOCKED_IMPORTS = frozenset(("_posixsubprocess", "_ctypes", "ctypes", "_socket", "socket", "_multiprocessing",
                             "multiprocessing", "_testcapi", "_testinternalcapi", "_xxsubinterpreters", "mmap"))
# audit event -> (indices of its path arguments, index of its dir_fd argument or None)
PATH_EVENTS = MappingProxyType({
    "os.remove": ((0,), 1), "os.rmdir": ((0,), 1), "os.mkdir": ((0,), 2), "os.chmod": ((0,), 2),
    "os.chown": ((0,), 3), "os.utime": ((0,), 3), "os.truncate": ((0,), None), "os.rename": ((0, 1), 2),
    "os.symlink": ((1,), 2), "os.setxattr": ((0,), None), "os.removexattr": ((0,), None),
    "shutil.rmtree": ((0,), 1), "shutil.move": ((0, 1), None), "shutil.copyfile": ((1,), None),
    "shutil.copytree": ((1,), None),
})
UNAUDITED_CALLS = ("mkfifo", "mknod", "pidfd_open", "pidfd_send_signal", "pthread_kill")  # no audit event in 3.11

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encoded(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    check(libc.mount(encoded(source), encoded(target), encoded(fstype), flags, encoded(data)), f"mount {target}")


def enter_namespaces(cfg: dict[str, Any], layers: dict[str, Any]) -> bool:
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


def hide_folder(folder: str, cfg: dict[str, Any]) -> None:
    """An empty tmpfs over ``folder``, with the interpreter's folders inside it bound back."""
    if not os.path.isdir(folder) or os.path.islink(folder):
        return
    inner = [k for k in cfg["keep"] if k.startswith(folder.rstrip("/") + "/")]
    if folder in cfg["keep"] or any(folder.startswith(k.rstrip("/") + "/") for k in cfg["keep"]):
        return  # the interpreter lives there: it stays visible (read-only)
    handles = [os.open(k, os.O_PATH | os.O_DIRECTORY) for k in inner]  # reachable once covered
    mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    for kept, handle in zip(inner, handles, strict=True):
        os.makedirs(kept, exist_ok=True)
        mount(f"/proc/self/fd/{handle}", kept, None, MS_BIND | MS_REC)
        os.close(handle)
    if cfg["root"].startswith(folder.rstrip("/") + "/"):
        os.makedirs(cfg["root"], exist_ok=True)


def fence_files(cfg: dict[str, Any], uid: int, gid: int) -> None:
    """Read-only everything, empty tmpfs over shared folders, a fresh tmpfs as the work folder."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    for folder in cfg["hidden"]:
        hide_folder(folder, cfg)
    attr = MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)),
          "mount_setattr /")
    mount("tmpfs", cfg["root"], "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={cfg['fsize']},nr_inodes=4096,mode=700,uid={uid},gid={gid}")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def limit(which: int, soft: int, hard: int | None = None) -> None:
    try:
        resource.setrlimit(which, (soft, soft if hard is None else hard))
    except (ValueError, OSError):
        pass


def fence_process(cfg: dict[str, Any]) -> None:
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_FSIZE, cfg["fsize"])
    limit(resource.RLIMIT_NOFILE, cfg["nofile"])
    limit(resource.RLIMIT_NPROC, cfg["nproc"])
    limit(resource.RLIMIT_AS, cfg["memory"])
    cpu = int(cfg["timeout"]) + 1
    limit(resource.RLIMIT_CPU, cpu, cpu + 1)


def drop_identity(cfg: dict[str, Any], layers: dict[str, Any]) -> None:
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if os.geteuid() == 0 and cfg["uid"] is None and cfg["drop"]:
        raise PermissionError("no uid to drop to: a program never runs as root unless asked")
    if cfg["uid"] is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])  # from root to another uid: every capability goes
        layers["fresh_uid"] = cfg["uid"] != NOBODY
    # Whatever capabilities are left (those of our own user namespace) go too.
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    check(libc.capset(header, data), "capset")
    with open("/proc/self/status") as handle:
        layers["capabilities"] = [line.split()[1] for line in handle if line.startswith("CapEff:")][0]
    layers["uid"] = os.getuid()


def fence(cfg: dict[str, Any], layers: dict[str, Any]) -> None:
    """U's fences, in the order that keeps each step possible: files while privileged, the modules
    the program imports while the interpreter's files are surely readable, then the identity."""
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # S also kills U itself; this covers S being killed
    os.setsid()  # out of S's process group: kill(0, ...) from the program cannot reach S
    as_root = cfg["uid"] is not None and os.geteuid() == 0
    if layers.get("namespaces"):
        fence_files(cfg, cfg["uid"] if as_root else os.getuid(), cfg["gid"] if as_root else os.getgid())
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


def serve(cfg: dict[str, Any], layers: dict[str, Any], report_fd: int) -> None:
    """U: fence, report, then run the program and answer calls of its entry point."""
    fence(cfg, layers)
    send(report_fd, layers)
    os.close(report_fd)
    send(cfg["to_t"], {"ready": True})
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    answer_calls(cfg["to_t"], Lines(cfg["from_t"]), cfg["entry_point"])


def answer_calls(to_t: int, from_t: Lines, entry_point: str) -> None:
    """Load the program on the tester's first message, then one answer per call, until T leaves."""
    scope: dict[str, Any] = {}
    entry: Callable[..., Any] | None = None
    answer: dict[str, Any]
    while True:
        try:
            message = from_t.read()
        except BaseException:
            os._exit(0)
        try:
            if "program" in message:
                exec(compile(message["program"], "<program>", "exec"), scope)
                entry = scope.get(entry_point)
                answer = {"ok": None}
            else:
                value = entry(*decode(message["call"]), **decode(message["kw"]))  # type: ignore[misc]
                answer = {"ok": encode(value)}
        except BaseException as err:
            answer = {"raised": type(err).__name__}
        try:
            send(to_t, answer)
        except BaseException:
            os._exit(0)


def preimport(names: list[str]) -> None:
    # Loaded while the interpreter's files are surely readable (a fresh uid may not read /root).
    for name in names:
        try:
            __import__(name)
        except BaseException:
            pass


def drop_unaudited_calls() -> None:
    """Calls without an audit event cannot be refused by the hook: they go instead."""
    import importlib

    for module in (os, signal, *map(importlib.import_module, ("posix", "_signal"))):
        for name in UNAUDITED_CALLS:
            module.__dict__.pop(name, None)


def path_checker(root: str) -> Callable[..., bool]:
    """``inside(path, dir_fd)``: whether a path lands in the work folder. Every helper it uses is
    captured here, so a program that rebinds module attributes later cannot change its answer."""
    import os.path as osp
    import pathlib

    realpath, fsdecode, join, readlink = osp.realpath, os.fsdecode, osp.join, os.readlink
    prefix = root.rstrip("/") + "/"
    plain_paths = (pathlib.PosixPath, pathlib.PurePosixPath)

    def inside(path: Any, dir_fd: Any = None) -> bool:
        if type(path) in plain_paths:
            path = str(path)
        if type(path) is int:
            return False  # an fd could be a folder outside: path operations on fds are refused
        if type(path) not in (str, bytes):
            return False  # objects whose __fspath__ could answer differently twice
        path = fsdecode(path)
        if type(dir_fd) is int and dir_fd >= 0 and not path.startswith("/"):  # -1: no dir_fd given
            path = join(readlink(f"/proc/self/fd/{dir_fd}"), path)
        resolved: str = realpath(path)
        return resolved == root or resolved.startswith(prefix) or resolved == "/dev/null"

    return inside


def open_checker(inside: Callable[..., bool]) -> Callable[[Any, Any, Any], None]:
    """The hook's check of an ``open`` event: no write, and no folder, outside the work folder
    (helpers captured here, as in :func:`path_checker`)."""
    import os.path as osp
    import pathlib

    realpath, fsdecode, isdir = osp.realpath, os.fsdecode, osp.isdir
    plain_paths = (pathlib.PosixPath, pathlib.PurePosixPath)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def check_open(path: Any, mode: Any, flags: Any) -> None:
        if type(path) is int:
            return  # an already open descriptor (os.fdopen)
        if type(path) in plain_paths:
            path = str(path)
        writing = (type(mode) is str and any(c in mode for c in "wax+")) or bool((flags or 0) & write_flags)
        # The event carries no dir_fd: a relative write is allowed only when it lands inside
        # from the working folder (dir_fd opens of outside folders are refused below).
        if writing and not inside(path):
            raise PermissionError("sandbox: writing outside the working folder is not allowed")
        if not inside(path) and (type(path) not in (str, bytes) or isdir(realpath(fsdecode(path)))):
            raise PermissionError("sandbox: opening folders outside the working folder is not allowed")

    return check_open


def install_guards(root: str) -> None:
    """The last layer (the only file fence without namespaces): refuse writes outside the folder,
    process creation, signals, sockets and native code, for code that plays by Python's rules."""
    blocked_prefixes, blocked_imports, path_events = BLOCKED_EVENT_PREFIXES, BLOCKED_IMPORTS, PATH_EVENTS
    inside = path_checker(root)
    check_open = open_checker(inside)
    for name in blocked_imports:
        sys.modules.pop(name, None)
    drop_unaudited_calls()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(blocked_prefixes):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0].split(".")[0] in blocked_imports:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            check_open(*args)
        elif event in path_events:
            indices, fd_index = path_events[event]
            dir_fd = args[fd_index] if fd_index is not None and fd_index < len(args) else None
            for index in indices:
                if index < len(args) and args[index] is not None and not inside(args[index], dir_fd):
                    raise PermissionError(f"sandbox: {event} outside the working folder is not allowed")
        elif event == "object.__setattr__" and len(args) > 1 and args[1] == "__code__":
            raise PermissionError("sandbox: replacing function code is not allowed")

    sys.addaudithook(hook)


def kill_descendants() -> None:
    """Without a PID namespace: as subreaper, every orphan is our child; kill until none is left."""
    for _ in range(200):
        children: set[int] = set()
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


def start_program(cfg: dict[str, Any], layers: dict[str, Any]) -> tuple[int, int]:
    """Fork U; (its pid, the read end of its one report line)."""
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(report_r)
        try:
            serve(cfg, layers, report_w)
        except BaseException as err:
            try:
                send(report_w, {"setup_error": f"{type(err).__name__}: {err}"})
            except BaseException:
                pass
        os._exit(1)
    os.close(report_w)
    for fd in (cfg["to_t"], cfg["from_t"]):
        os.close(fd)
    return child, report_r


def wait_for_the_end(control: int, deadline_s: float) -> None:
    """Until the harness closes the control pipe (or dies), or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([control], [], [], max(0.0, deadline - time.monotonic()))
        if ready and not os.read(control, 4096):
            break


def supervise(cfg: dict[str, Any]) -> None:
    layers = {"namespaces": False, "user_namespace": False, "fresh_uid": False, "read_only_root": False,
              "python_guards": False}
    if not enter_namespaces(cfg, layers):
        if cfg["require_namespaces"]:  # they worked when probed: a weaker check now would go unnoticed
            send(1, {**layers, "setup_error": "namespaces are required here but unshare failed"})
            os._exit(1)
        check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
    child, report_r = start_program(cfg, layers)
    # Relay U's one report line (written before the program starts; U closes its end then).
    try:
        report = Lines(report_r).read()
    except BaseException:
        report = {"setup_error": "the program's process reported nothing"}
    send(1, report)
    os.close(1)
    wait_for_the_end(sys.stdin.fileno(), cfg["deadline"])
    os.kill(child, signal.SIGKILL)  # U is the init of its PID namespace: everything in it dies
    os.waitpid(child, 0)
    kill_descendants()
    os._exit(0)


if __name__ == "__main__":
    supervise(json.loads(sys.argv[1]))
