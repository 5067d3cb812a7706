"""Red team: hostile programs against the sandbox, run by a harness process as root and as a
non-root user (a subprocess with a dropped uid). Asserts 0 false passes, 0 files outside the
programs' folders, 0 surviving processes, the fences' probes held, no host secret in any result,
and the host temp folders' modes unchanged.

Each program's test asks ``f(2) == EXPECTED`` for a random EXPECTED the program is never told:
passing means it reached the test or forged the verdict. "Native" programs run with the Python
guards off, standing for native code that would bypass them. "Probe" programs measure a fence
from inside (e.g. how many outside processes they can see) and pass only if it held.

Hostile native code (``kill(-1, SIGKILL)``, a fork bomb) could hurt the host where the kernel does
not fence it, so nothing here starts before the sandbox's probe, run as the harness will run,
confirmed namespaces and a dropped uid (the ``harness`` fixture; else the test is skipped with the
probe's reason), and every case with namespaces requires them.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.sandbox import unfenced_reason
from tests.processes import live_processes, skip_unless_fenced

SANDBOX = Path(__file__).resolve().parent.parent / "benchmarks" / "sandbox.py"
RUNNER = Path(__file__).resolve().with_name("sandbox_redteam_runner.py")
DELAY_S = 3.0  # how long daemons wait before writing: past every program's time limit
LIMITS = {"timeout_s": 1.0, "grace_s": 1.5}
NATIVE = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


@dataclass(frozen=True)
class Case:
    name: str
    program: str
    guards: bool = True  # False: stands for native code that bypasses the Python guards
    probe: bool = False  # True: the program returns a count of fence breaches; passes iff it is 0
    visible: bool = False  # True: shared temp folders are not hidden (read-only), to test that fence
    namespaces: bool = True  # False: the fallback without namespaces (ordinary code only: guards on)


CLEANUP_MESS = """
import os
os.symlink('HOSTTMP', 'tmp-link')
os.symlink('VICTIM', 'victim-link')
os.mkdir('ro')
os.symlink('HOSTTMP', 'ro/tmp-link')
os.symlink('VICTIM', 'ro/victim-link')
open('ro/file', 'w').close()
os.chmod('ro', 0o500)
os.makedirs('locked/inner')
open('locked/inner/file', 'w').close()
os.chmod('locked/inner', 0)
os.chmod('locked', 0)
def f(x):
    return x
"""


HOSTILE = [
    Case("getframe rewrites every caller's locals", """
import sys
def f(x):
    frame = sys._getframe()
    while frame is not None:
        for name in list(frame.f_locals):
            if name in ("status", "nonce", "report_fd", "passed", "answer", "value", "reply"):
                try:
                    frame.f_locals[name] = "passed"
                except Exception:
                    pass
        frame = frame.f_back
    return x
"""),
    Case("traceback frames reach the launcher's globals", """
def f(x):
    try:
        1 / 0
    except ZeroDivisionError as err:
        frame = err.__traceback__.tb_frame
    while frame is not None:
        scope = frame.f_globals
        for name in ("encode", "decode", "_encode", "_decode"):
            if name in scope:
                scope[name] = lambda value, depth=0: value
        frame = frame.f_back
    return x
"""),
    Case("settrace skips lines", """
import sys
def tracer(frame, event, arg):
    if event == "line" and frame.f_code.co_name != "f":
        try:
            frame.f_lineno = frame.f_lineno + 1
        except Exception:
            pass
    return tracer
sys.settrace(tracer)
def f(x):
    return x
"""),
    Case("os._exit(0) at the top", "import os\nos._exit(0)\ndef f(x):\n    return x\n"),
    Case("os._exit(0) in the function", "import os\ndef f(x):\n    os._exit(0)\n"),
    Case("sys.exit(0) in the function", "import sys\ndef f(x):\n    sys.exit(0)\n"),
    Case("object equal to everything", "class Yes:\n    def __eq__(self, other):\n        return True\n"
         "    __hash__ = object.__hash__\ndef f(x):\n    return Yes()\n"),
    Case("forged replies and verdicts on every descriptor", """
import os
def f(x):
    for fd in range(64):
        for junk in (b'passed\\n', b'{"ok": true}\\n', b'0\\n'):
            try:
                os.write(fd, junk)
            except OSError:
                pass
    os._exit(0)
"""),
    Case("reads the test from other processes", NATIVE + """
import re
found = None
for pid in os.listdir('/proc'):
    for part in ('cmdline', 'environ', 'fd/0', 'fd/1'):
        try:
            text = open(f'/proc/{pid}/{part}', 'rb').read(1 << 20).decode('latin-1')
        except Exception:
            continue
        match = re.search(r'candidate\\(2\\) == (\\d+)', text)
        if match:
            found = int(match.group(1))
def f(x):
    return found if found is not None else x
""", guards=False),
    Case("ptrace or /proc/mem of every other process", NATIVE + """
touched = 0
for pid in os.listdir('/proc'):
    if pid.isdigit() and int(pid) != os.getpid():
        if libc.ptrace(16, int(pid), 0, 0) == 0:
            touched += 1
        try:
            with open(f'/proc/{pid}/mem', 'r+b') as mem:
                touched += 1
        except OSError:
            pass
def f(x):
    return touched
""", guards=False, probe=True),
    Case("kills everything it can name", NATIVE + """
import signal
for target in (-1, 0):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
for pid in range(2, min(int(open('/proc/sys/kernel/pid_max').read()), 1 << 16)):
    try:
        fd = os.pidfd_open(pid)
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
def f(x):
    return x
""", guards=False),
    Case("setsid daemon writes after the limit", NATIVE + """
import time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        libc.prctl(1, 0, 0, 0, 0)  # clear the parent-death signal
        time.sleep(DELAY)
        for folder in ('VICTIM', 'HOSTTMP'):
            try:
                open(folder + '/TOKEN-daemon', 'w').write('late')
            except OSError:
                pass
        os._exit(0)
    os._exit(0)
def f(x):
    return x
""", guards=False, visible=True),
    Case("thread writes after the limit", """
import threading, time
def late():
    time.sleep(DELAY)
    for folder in ('VICTIM', 'HOSTTMP'):
        try:
            open(folder + '/TOKEN-thread', 'w').write('late')
        except OSError:
            pass
threading.Thread(target=late).start()
def f(x):
    return x
""", visible=True),
    Case("_posixsubprocess runs a shell", """
import _posixsubprocess, os
def f(x):
    _posixsubprocess.fork_exec(['/bin/sh', '-c', 'touch VICTIM/TOKEN-sh HOSTTMP/TOKEN-sh'], [b'/bin/sh'], True, (), None,
                               None, -1, -1, -1, -1, -1, -1, *os.pipe(), False, False, None, None, None, -1, None, False)
    return x
""", visible=True),
    Case("subprocess shell with the guards off", """
import subprocess
subprocess.run(['/bin/sh', '-c', 'touch VICTIM/TOKEN-sh2 HOSTTMP/TOKEN-sh2; (sleep DELAY; touch VICTIM/TOKEN-sh3) &'])
def f(x):
    return x
""", guards=False, visible=True),
    Case("dir_fd create and rename outside", """
import os
for guard in range(1):
    fd = os.open('VICTIM', os.O_RDONLY)
    try:
        os.close(os.open('TOKEN-dirfd', os.O_CREAT | os.O_WRONLY, 0o666, dir_fd=fd))
    except OSError:
        pass
    open('here', 'w').close()
    try:
        os.rename('here', 'TOKEN-renamed', dst_dir_fd=fd)
    except OSError:
        pass
def f(x):
    return x
""", visible=True),
    Case("dir_fd create with the guards off", """
import os
fd = os.open('VICTIM', os.O_RDONLY)
os.close(os.open('TOKEN-dirfd2', os.O_CREAT | os.O_WRONLY, 0o666, dir_fd=fd))
def f(x):
    return x
""", guards=False, visible=True),
    Case("mknod and mkfifo outside", """
import os
for make in (os.mkfifo, os.mknod):
    try:
        make('VICTIM/TOKEN-' + make.__name__)
    except OSError:
        pass
def f(x):
    return x
""", guards=False, visible=True),
    Case("links and locked folders for the cleanup", CLEANUP_MESS + "os.mkfifo('fifo')\n", guards=False, visible=True),
    Case("links and locked folders for the cleanup, no namespaces", CLEANUP_MESS, namespaces=False),
    Case("writes outside, no namespaces", """
import os, pathlib
for attempt in (lambda: open('VICTIM/victim.txt', 'w'), lambda: open('HOSTTMP/TOKEN-plain', 'w'),
                lambda: pathlib.Path('VICTIM/TOKEN-path').write_text('x'), lambda: os.rename('VICTIM/victim.txt', 'stolen'),
                lambda: os.chmod('VICTIM', 0o700), lambda: os.chmod('HOSTTMP', 0o700)):
    try:
        attempt()
    except OSError:
        pass
def f(x):
    return x
""", namespaces=False),
    Case("chmod the host temp folders", """
import os
for path in ('HOSTTMP', 'VICTIM', '/tmp'):
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
os.symlink('VICTIM', 'link')
try:
    os.chmod('link', 0o700)
except OSError:
    pass
def f(x):
    return x
""", guards=False, visible=True),
    Case("hard link an outside file and write it", """
import os
try:
    os.link('VICTIM/victim.txt', 'hard')
    open('hard', 'w').write('changed')
except OSError:
    pass
open('VICTIM/victim.txt', 'w').write('changed')
def f(x):
    return x
""", guards=False, visible=True),
    Case("remounts the root read-write", NATIVE + """
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
done = 0
done += libc.mount(None, b'/', None, 32 | 4096, None) == 0  # MS_REMOUNT | MS_BIND, without MS_RDONLY
for path in (b'/', b'VICTIM', b'HOSTTMP'):
    done += libc.umount2(path, 2) == 0
def f(x):
    try:
        open('VICTIM/TOKEN-remount', 'w').write('x')
        return done + 1
    except OSError:
        return done
""", guards=False, probe=True, visible=True),
    Case("nested user namespace clears read-only", NATIVE + """
class Attr(ctypes.Structure):
    _fields_ = [('set', ctypes.c_uint64), ('clr', ctypes.c_uint64), ('prop', ctypes.c_uint64), ('fd', ctypes.c_uint64)]
breaches = 0
uid, gid = os.getuid(), os.getgid()
if libc.unshare(0x10000000 | 0x20000) == 0:
    try:
        open('/proc/self/setgroups', 'w').write('deny')
        open('/proc/self/uid_map', 'w').write(f'0 {uid} 1')
        open('/proc/self/gid_map', 'w').write(f'0 {gid} 1')
    except OSError:
        pass
    attr = Attr(0, 1, 0, 0)
    libc.syscall(442, -100, b'/', 0x8000, ctypes.byref(attr), ctypes.sizeof(attr))
    for folder in ('VICTIM', 'HOSTTMP'):
        try:
            open(folder + '/TOKEN-nested', 'w').write('x')
            breaches += 1
        except OSError:
            pass
def f(x):
    return breaches
""", guards=False, probe=True, visible=True),
    Case("overwrites the standard library", """
import json.decoder
try:
    open(json.decoder.__file__, 'a').write('\\nraise SystemExit(0)\\n')
except OSError:
    pass
def f(x):
    return x
""", guards=False),
    Case("network to the harness's server", """
import socket
def f(x):
    s = socket.create_connection(('127.0.0.1', PORT), timeout=0.5)
    s.sendall(b'leak')
    return x
""", guards=False),
    Case("network with the guards on", "import socket\ns = socket.create_connection(('127.0.0.1', PORT), timeout=0.5)\n"
         "def f(x):\n    return x\n"),
    Case("unix sockets of host services", """
import os
try:
    import socket
    tops = ('/run', '/var/run', '/tmp', '/dev/shm', '/var/tmp')
except ImportError:  # a fresh uid may not read the interpreter's extension modules
    tops = ()
connected = 0
for top in tops:
    for folder, _, names in os.walk(top):
        for name in names:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(os.path.join(folder, name))
                connected += 1
            except OSError:
                pass
            s.close()
def f(x):
    return connected
""", guards=False, probe=True),
    Case("sees no other process", """
import os
def f(x):
    return len([p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()])
""", guards=False, probe=True),
    Case("host secrets in messages", """
import glob, os
found = [os.environ.get('EROSION_REDTEAM_SECRET', '')]
for path in glob.glob('/proc/*/environ') + ['/proc/self/environ']:
    try:
        found.append(open(path, 'rb').read().decode('latin-1'))
    except OSError:
        pass
def f(x):
    raise ValueError(' '.join(found))
"""),
    Case("host secrets as the returned value", """
import glob
found = ''
for path in glob.glob('/proc/*/environ'):
    try:
        found += open(path, 'rb').read().decode('latin-1')
    except OSError:
        pass
def f(x):
    return found + ' EROSION_REDTEAM_SECRET'
""", guards=False),
    Case("gains no identity", NATIVE + """
gained = 0
for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setresuid(0, 0, 0), lambda: os.chroot('/')):
    try:
        call()
        gained += 1
    except OSError:
        pass
def f(x):
    return gained
""", guards=False, probe=True),
    Case("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", guards=False),
    Case("memory bomb", "x = bytearray(10 * 1024 ** 3)\ndef f(x):\n    return x\n"),
    Case("fills the disk", """
block = b'x' * (1 << 20)
with open('big', 'wb') as out:
    try:
        for _ in range(1 << 12):
            out.write(block)
    except OSError:
        pass
def f(x):
    return x
"""),
    Case("huge reply", "def f(x):\n    return 'x' * (64 << 20)\n"),
    Case("endless loop ignoring signals", "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
         "def f(x):\n    while True:\n        pass\n", guards=False),
]
CONTROL = Case("control: a right answer", "def f(x):\n    return EXPECTED\n")


def interpreter_for(uid: int | None) -> str | None:
    """An interpreter that ``uid`` can run (the venv's may live under a folder only root reads)."""
    for candidate in (sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}", "/usr/bin/python3"):
        if not os.path.exists(candidate):
            continue
        try:
            probe = subprocess.run([candidate, "-I", "-c", "import ctypes, json"], user=uid, group=uid, extra_groups=[],
                                   cwd="/", capture_output=True, timeout=30, check=False) if uid is not None else None
        except (OSError, subprocess.SubprocessError):
            continue
        if probe is None or probe.returncode == 0:
            return candidate
    return None


def files_named(token: str, folders: list[Path]) -> list[str]:
    hits = []
    for folder in folders:
        for base, dirs, names in os.walk(folder) if folder.is_dir() else ():
            hits += [os.path.join(base, n) for n in dirs + names if token in n]
            if base.count(os.sep) - str(folder).count(os.sep) >= 1:
                dirs.clear()  # the top two levels: enough for names the programs choose
    return hits


def modes(paths: list[Path]) -> dict[str, int]:
    return {str(p): stat.S_IMODE(p.stat().st_mode) for p in paths}


def hostile_job(values: dict[str, str], expected: int) -> str:
    """The runner's job: every case with its placeholders filled in, and a test that passes only on
    ``expected`` (0 for a probe: no breach)."""
    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    cases = [{"name": c.name, "program": fill(c.program), "guards": c.guards, "visible": c.visible,
              "namespaces": c.namespaces,
              "test": f"def check(candidate):\n    assert candidate(2) == {0 if c.probe else expected}, candidate(2)\n"}
             for c in [*HOSTILE, CONTROL]]
    return json.dumps({"cases": cases, "limits": LIMITS})


def harness_env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Harness:
    """Who runs the sandbox: an interpreter, a uid (None: this process's own), and a HOME (and cwd)."""

    privileges: str
    python: str
    run_as: int | None
    home: Path

    def run(self, mode: str, job: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """tests/sandbox_redteam_runner.py in ``mode`` (probe or run), as this harness."""
        user = {"user": self.run_as, "group": self.run_as, "extra_groups": []} if self.run_as is not None else {}
        return subprocess.run([self.python, "-I", "-B", str(RUNNER), str(SANDBOX), mode], input=job, capture_output=True,
                              text=True, check=False, cwd=self.home, env=env, timeout=240, **user)


@pytest.fixture(params=["root", "non-root"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A harness process's setting, gated before any hostile program starts: the sandbox's probe, run
    exactly as the programs will be (same interpreter, uid and HOME; namespaces required), must have
    confirmed namespaces and a dropped uid, or the test is skipped with the probe's reason."""
    privileges, euid = request.param, os.geteuid()
    if privileges == "root" and euid != 0:
        pytest.skip("the harness is not root here: only the non-root run applies")
    run_as = 3_200_000_000 + secrets.randbelow(1_000_000) if privileges == "non-root" and euid == 0 else None
    python = interpreter_for(run_as)
    if python is None:
        pytest.skip(f"no interpreter that uid {run_as} may run")
    home = Path(tempfile.mkdtemp(prefix="erosion-redteam-"))  # the harness's cwd, HOME and TMPDIR
    try:
        home.chmod(0o755)
        if run_as is not None:
            os.chown(home, run_as, run_as)
        chosen = Harness(privileges, python, run_as, home)
        probed = chosen.run("probe", "", harness_env(home))
        assert probed.returncode == 0, f"the probe did not run: {probed.stderr[-2000:]}"
        skip_unless_fenced(json.loads(probed.stdout)["refusal"], f"a {privileges} harness")
        yield chosen
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow  # the whole red-team catalogue, 20-40 s per harness; `make test` and CI run it
def test_hostile_programs(harness: Harness):
    token, secret = f"redteam{secrets.token_hex(6)}", f"s3cr3t{secrets.token_hex(12)}"
    expected = 10_000 + secrets.randbelow(10 ** 9)
    home = harness.home
    victim = Path(tempfile.mkdtemp(prefix="erosion-redteam-victim-"))
    server = socket.socket()
    try:
        victim.chmod(0o777)
        (victim / "victim.txt").write_text("original")
        (victim / "victim.txt").chmod(0o666)
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        watched_modes = modes([Path(tempfile.gettempdir()), home, victim])

        job = hostile_job({"VICTIM": str(victim), "HOSTTMP": str(home), "TOKEN": token, "DELAY": str(DELAY_S),
                           "PORT": str(server.getsockname()[1]), "EXPECTED": str(expected)}, expected)
        ran = harness.run("run", job, {**harness_env(home), "EROSION_REDTEAM_SECRET": secret})
        assert ran.returncode == 0, f"the harness did not survive (or refused): {ran.stdout[-500:]} {ran.stderr[-2000:]}"
        results = {r["name"]: r for r in json.loads(ran.stdout)}
        time.sleep(DELAY_S + 0.5)  # let any survivor do its late write

        assert unfenced_reason(results[CONTROL.name]["isolation"]) == ""  # as the gate's probe found
        assert results[CONTROL.name]["passed"], results[CONTROL.name]
        expected_outcome = {c.name: c.probe for c in HOSTILE}
        wrong = {n: results[n]["detail"] for n, probe in expected_outcome.items() if results[n]["passed"] is not probe}
        assert wrong == {}, "false passes (or probes that found a breach)"
        assert secret not in ran.stdout and "EROSION_REDTEAM_SECRET" not in ran.stdout  # not even its name
        assert files_named(token, [victim, home, Path(tempfile.gettempdir()), Path("/dev/shm"), Path("/var/tmp"),
                                   Path.cwd()]) == []
        assert (victim / "victim.txt").read_text() == "original" and sorted(os.listdir(victim)) == ["victim.txt"]
        assert modes([Path(tempfile.gettempdir()), home, victim]) == watched_modes
        uids = {r["isolation"]["uid"] for r in results.values() if r["isolation"].get("uid") not in (None, 0)}
        uids |= {harness.run_as} if harness.run_as is not None else set()
        assert live_processes(uids) == []
        with pytest.raises(BlockingIOError):
            server.accept()
        assert list(home.glob("erosion-sandbox-*")) == [], "a work folder was left behind"
    finally:
        server.close()
        shutil.rmtree(victim, ignore_errors=True)
