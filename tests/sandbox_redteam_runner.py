"""The red team's harness process (tests/test_sandbox_redteam.py), run by path as root or as a
dropped uid: ``python -I -B sandbox_redteam_runner.py SANDBOX_PY probe|run``.

It loads ``benchmarks/sandbox.py`` by path (standard library only: no virtual environment needed by
another uid). ``probe`` prints the sandbox's refusal of native code here ("" when the kernel fences
it). ``run`` reads the job (cases and limits) as JSON on stdin and prints each case's result; it
asks the same probe first and runs nothing if it refuses (exit status 3).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

REFUSED = 3


def load_sandbox(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("sandbox_under_test", path)
    assert spec is not None and spec.loader is not None, path
    sandbox = importlib.util.module_from_spec(spec)
    sys.modules["sandbox_under_test"] = sandbox  # dataclasses look their module up
    spec.loader.exec_module(sandbox)
    return sandbox


def run_case(sandbox: ModuleType, case: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    """One hostile program; a case with namespaces requires them (a check without them is an error)."""
    hidden = () if case["visible"] else sandbox.HIDDEN_ALWAYS
    fences = sandbox.Limits(python_guards=case["guards"], namespaces=case["namespaces"],
                            require_namespaces=case["namespaces"], hidden=hidden, **limits)
    result = sandbox.run_check(sandbox.Check(case["program"], case["test"], "f"), fences)
    return {"name": case["name"], "passed": result.passed, "detail": result.detail, "isolation": result.isolation}


def main() -> int:
    sandbox, mode = load_sandbox(sys.argv[1]), sys.argv[2]
    refusal = sandbox.native_code_refusal()
    if mode == "probe" or refusal:
        print(json.dumps({"refusal": refusal}))
        return REFUSED if mode == "run" else 0
    job = json.load(sys.stdin)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: run_case(sandbox, case, job["limits"]), job["cases"]))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
