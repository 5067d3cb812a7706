"""One run = one (method, ordering, seed): evaluate the starting model, then for each domain train
(with the method's hooks), checkpoint, evaluate. Resumable at every evaluation point.

Checkpoint k (``state/checkpoint.pt``, only the latest is kept) holds the model after domain k
(k = 0: after the method's ``prepare``) and the method's state; step file k holds the evaluation
of that model. A rerun finds the last complete step file and the checkpoint, and continues; it
never redoes a finished step. Every source of randomness is seeded from (seed, domain index),
so a resumed run gives the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import os
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from benchmarks import get_benchmark
from benchmarks.base import BenchmarkResult
from benchmarks.composite import composites
from benchmarks.judges import Judge, get_judge
from benchmarks.lm import ChatLM
from harness.config import SuiteConfig, stable_hash
from harness.domains import training_examples
from harness import faults
from harness.faults import reached
from harness.models import ModelHandle, device, load_model, load_tokenizer
from harness.safety_data import calibration_set
from harness.store import Record, ResultStore, RunInfo, make_run_id, ordering_label
from harness.training import TrainContext, attach_adapter, merge_adapter, train_domain
from methods import build_method

VERSIONED = ("erosion-bench", "torch", "transformers", "peft", "lm_eval")
CHECKPOINT = "checkpoint.pt"


def library_versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@torch.no_grad()
def weights_fingerprint(model: torch.nn.Module) -> str:
    """Names, shapes and two float64 sums per parameter: equal for untouched weights, different
    after any training step or weight edit (cheap enough to take at 7B on a GPU)."""
    return stable_hash([(name, list(p.shape), p.sum(dtype=torch.float64).item(), p.abs().sum(dtype=torch.float64).item())
                        for name, p in model.named_parameters()])


def set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)


class Run:
    """Everything one run needs, with the resumable loop in :meth:`execute`."""

    def __init__(self, suite: SuiteConfig, handle: ModelHandle, method_name: str, ordering: list[str], seed: int, store: ResultStore) -> None:
        self.suite, self.handle, self.ordering, self.seed, self.store = suite, handle, ordering, seed, store
        self.method_name = method_name
        self.config_hash = suite.config_hash()
        self.run_id = make_run_id(handle.name, method_name, ordering, seed, self.config_hash)
        self.versions = library_versions()
        self.starting_fingerprint: str | None = None  # of the loaded starting model, set by a run

    # ---- bookkeeping ---------------------------------------------------------------------------
    def info(self, **changes: Any) -> RunInfo:
        current = self.store.read_run(self.run_id)
        if current is None or current.config_hash != self.config_hash:
            current = RunInfo(self.run_id, self.handle.name, self.handle.scale, self.method_name, self.ordering,
                              self.seed, self.config_hash, started_at=time.time(), versions=self.versions,
                              config={**self.suite.model_dump(), "method_config": self.suite.method_configs.get(self.method_name, {})})
        for key, value in changes.items():
            setattr(current, key, value)
        return current

    def is_done(self) -> bool:
        info = self.store.read_run(self.run_id)
        return bool(info and info.status == "done" and info.config_hash == self.config_hash
                    and self.store.finished_steps(self.run_id, len(self.ordering)) == len(self.ordering) + 1)

    def records(self, step: int, scores: dict[str, dict[str, float]], n_items: dict[str, int], wall: float) -> list[Record]:
        domain = self.ordering[step - 1] if step else None
        rows = [(b, m, v, n_items.get(b)) for b, metrics in scores.items() for m, v in metrics.items()]
        rows += [("composite", name, value, None) for name, value in composites(scores).items()]
        return [
            Record(self.handle.name, self.handle.scale, self.method_name, ordering_label(self.ordering), self.seed,
                   step, domain, b, m, float(v), n, self.config_hash, wall, self.versions)
            for b, m, v, n in rows
        ]

    # ---- evaluation ----------------------------------------------------------------------------
    def judge(self) -> Judge:
        return get_judge(self.suite.eval.judge, self.suite.eval.judge_model)

    def evaluate(self, model: torch.nn.Module, tokenizer, step: int, extras: dict[str, Any]) -> None:
        started = time.time()
        lm = ChatLM(model, tokenizer, max_length=self.handle.max_length, batch_size=self.suite.eval.batch_size, device=device())
        # An untouched starting model scores the same in every run (greedy decoding): the first run
        # to evaluate it shares each benchmark's result with the rest (every method, ordering, seed),
        # at any step: a model that trained nothing (no_training) is the starting model after every domain.
        share = weights_fingerprint(model) == self.starting_fingerprint
        scores, n_items, reused = {}, {}, []
        for name in self.suite.benchmarks:
            key = self.starting_key(name) if share else None
            result = self.starting_result(key) if key else None
            if result is None:
                result = get_benchmark(name).evaluate(lm, self.suite.eval.caps.get(name), self.suite.eval.max_new_tokens, self.judge())
                if key:
                    # Scores as pairs: JSON files are written with sorted keys, and metric order must survive.
                    self.store.write_starting(key, {"scores": list(result.scores.items()), "items": result.items, "run_id": self.run_id})
            else:
                reused.append(name)
            self.store.write_items(self.run_id, step, name, result.items)
            reached("after_benchmark")
            scores[name], n_items[name] = result.scores, len(result.items)
        wall = time.time() - started
        extras = {**extras, "domain": self.ordering[step - 1] if step else None, "eval_seconds": wall,
                  "eval_padding_share": lm.padding_share, **({"eval_reused": reused} if reused else {})}
        self.store.write_step(self.run_id, step, self.records(step, scores, n_items, wall), extras)

    def starting_key(self, benchmark: str) -> str:
        """What a starting-model score depends on: the weights, the benchmark and how it is run."""
        settings = self.suite.eval
        return f"{self.handle.name}-{benchmark}-" + stable_hash({
            "weights": str(self.handle.chat), "tokenizer": str(self.handle.tokenizer), "max_length": self.handle.max_length,
            "benchmark": benchmark, "cap": settings.caps.get(benchmark), "max_new_tokens": settings.max_new_tokens,
            "batch_size": settings.batch_size, "judge": settings.judge, "judge_model": settings.judge_model,
            "threads": self.suite.threads_per_run, "versions": self.versions,
        })

    def starting_result(self, key: str) -> BenchmarkResult | None:
        shared = self.store.read_starting(key)
        return BenchmarkResult(dict(shared["scores"]), shared["items"]) if shared else None

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, after: int, model: torch.nn.Module, method_state: dict[str, Any], extras: dict[str, Any]) -> None:
        path = self.store.state_dir(self.run_id) / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"after": after, "model": model.state_dict(), "method": method_state, "extras": extras}, tmp)
        reached("checkpoint")
        os.replace(tmp, path)

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self.store.state_dir(self.run_id) / CHECKPOINT
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location=device(), weights_only=False)
        except Exception as err:  # a truncated checkpoint is redone, never trusted
            import warnings

            warnings.warn(f"{path}: unreadable checkpoint ({err}); the run restarts from its last evaluation.")
            return None

    # ---- the run -------------------------------------------------------------------------------
    def execute(self) -> RunInfo:
        with self.store.lock(self.run_id) as acquired:
            if not acquired:
                return self.info()  # another process is on it
            if self.is_done():
                return self.info()
            self.store.write_run(self.info(status="running", error=None))
            faults.scope = self.run_id
            started = time.time()
            try:
                self._train_and_evaluate()
            except Exception:
                info = self.info(status="failed", error=traceback.format_exc(limit=20), finished_at=time.time())
                self.store.write_run(info)
                return info
            info = self.info(status="done", finished_at=time.time())
            info.wall_time_s += time.time() - started
            self.store.write_run(info)
            (self.store.state_dir(self.run_id) / CHECKPOINT).unlink(missing_ok=True)
            return info

    def _train_and_evaluate(self) -> None:
        settings = self.suite.training
        torch.set_num_threads(self.suite.threads_per_run)
        set_seed(self.seed)
        tokenizer = load_tokenizer(self.handle.tokenizer)
        model = load_model(self.handle.chat, self.handle.dtype)
        self.starting_fingerprint = weights_fingerprint(model)
        method = build_method(self.method_name, self.suite.method_configs.get(self.method_name))
        n_domains = len(self.ordering)
        ctx = TrainContext(model=model, tokenizer=tokenizer, settings=settings, calibration=calibration_set(self.seed),
                           seed=self.seed, domains=self.ordering,
                           checkpoints={"base": self.handle.base, "aligned": self.handle.chat})
        ctx.refusal_rate = self._probe_refusal(ctx)
        done = self.store.finished_steps(self.run_id, n_domains)
        checkpoint = self.load_checkpoint() if done else None
        if checkpoint is not None and checkpoint["after"] in (done - 1, done):
            start = checkpoint["after"]
            ctx.model = self._restore(ctx.model, checkpoint, settings)
            method.load_state_dict(checkpoint["method"])
        else:
            done, start = 0, 0  # nothing usable: start over (a redone step overwrites atomically)
            method.prepare(ctx)
            if settings.adapter_policy == "persistent":
                ctx.model = attach_adapter(ctx.model, settings, self.seed)
            self.save_checkpoint(0, ctx.model, method.state_dict(), {})
        if start == done:
            self.evaluate(ctx.model, tokenizer, start, (checkpoint or {}).get("extras", {}))
        for k in range(start + 1, n_domains + 1):
            extras = self._train_one_domain(ctx, method, k)
            self.save_checkpoint(k, ctx.model, method.state_dict(), extras)
            self.evaluate(ctx.model, tokenizer, k, extras)

    def _restore(self, model, checkpoint: dict[str, Any], settings):
        if settings.adapter_policy == "persistent":
            model = attach_adapter(model, settings, self.seed)
        model.load_state_dict(checkpoint["model"])
        return model

    def _train_one_domain(self, ctx: TrainContext, method, k: int) -> dict[str, Any]:
        started = time.time()
        ctx.domain, ctx.domain_index, ctx.events = self.ordering[k - 1], k - 1, []
        settings = self.suite.training
        ctx.domain_examples = training_examples(ctx.domain, settings.examples_per_domain, self.seed)
        if settings.adapter_policy == "merge_per_domain":
            ctx.model = attach_adapter(ctx.model, settings, self.seed * 100 + k)
        stats = train_domain(ctx, method, ctx.domain_examples)
        if settings.adapter_policy == "merge_per_domain":
            ctx.model = merge_adapter(ctx.model)
        return {"train": stats, "events": ctx.events, "train_seconds": time.time() - started,
                **method.domain_report(ctx)}

    def _probe_refusal(self, ctx: TrainContext):
        """Refusal rate (%) of the current model on harmful prompts (for CSM-style hooks)."""
        from benchmarks.harmbench import HarmfulRequest, refusal_items, refusal_scores

        def measure(prompts: list[str]) -> float:
            lm = ChatLM(ctx.model, ctx.tokenizer, max_length=self.handle.max_length, batch_size=self.suite.eval.batch_size, device=device())
            requests = [HarmfulRequest(str(i), p) for i, p in enumerate(prompts)]
            items = refusal_items(lm, requests, self.suite.eval.max_new_tokens, self.judge())
            return refusal_scores(items)["refusal_rate"]

        return measure

