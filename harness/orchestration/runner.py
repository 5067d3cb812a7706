"""One run = one (method, ordering, seed): evaluate the starting model, then for each domain train
(with the method's hooks), checkpoint, evaluate. Resumable at every evaluation point.

Checkpoint k (``state/checkpoint.pt``, only the latest is kept) holds the model after domain k
(k = 0: after the method's ``prepare``) and the method's state; step file k holds the evaluation
of that model. A rerun finds the last complete step file and the checkpoint, and continues; it
never redoes a finished step. Every source of randomness is seeded from (seed, domain index),
so a resumed run gives the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import copy
import json
import os
import time
import traceback
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from benchmarks import get_benchmark
from benchmarks.base import BenchmarkResult
from benchmarks.chance import CHANCE_PREFIX, chance_result
from benchmarks.composite import StepBootstrap, composites, step_bootstrap
from benchmarks.fingerprint import benchmark_fingerprint
from benchmarks.judges import Judge, get_judge
from harness.core import faults
from harness.core.adapters import attach_adapter, merge_adapter
from harness.core.context import TrainContext
from harness.core.domains import training_examples
from harness.core.errors import ErosionError
from harness.core.faults import reached
from harness.core.hashing import stable_hash
from harness.core.lm import ChatLM
from harness.core.models import TRAINED_MANIFEST, ModelHandle, device, load_model, load_tokenizer
from harness.core.safety_data import CalibrationSet, calibration_set, with_helpful_answers
from harness.core.store import (
    Record,
    ResultStore,
    RunInfo,
    atomic_write_dir,
    atomic_write_json,
    make_run_id,
    ordering_label,
    read_json,
)
from harness.orchestration.config import SuiteConfig
from harness.orchestration.presets import PRESETS
from harness.training import effective_settings, train_before_sequence, train_domain
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

    def __init__(self, suite: SuiteConfig, handle: ModelHandle, method_name: str, ordering: list[str], seed: int,
                 store: ResultStore) -> None:
        self.suite, self.handle, self.ordering, self.seed, self.store = suite, handle, ordering, seed, store
        self.method_name = method_name
        self.config_hash = suite.config_hash(method_name)
        self.run_id = make_run_id(handle.name, method_name, ordering, seed, self.config_hash)
        self.versions = library_versions()
        self.starting_fingerprint: str | None = None  # of the loaded starting model, set by a run
        self.adapter_policy = suite.training.adapter_policy  # the effective one, set by a run

    # ---- bookkeeping ---------------------------------------------------------------------------
    def info(self, **changes: Any) -> RunInfo:
        current = self.store.read_run(self.run_id)
        if current is None or current.config_hash != self.config_hash:
            current = RunInfo(self.run_id, self.handle.name, self.handle.scale, self.method_name, self.ordering,
                              self.seed, self.config_hash, started_at=time.time(), versions=self.versions,
                              config={**self.suite.model_dump(),
                                      "method_config": self.suite.method_configs.get(self.method_name, {})})
        for key, value in changes.items():
            setattr(current, key, value)
        return current

    def is_done(self) -> bool:
        info = self.store.read_run(self.run_id)
        return bool(info and info.status == "done" and info.config_hash == self.config_hash
                    and self.store.finished_steps(self.run_id, len(self.ordering)) == len(self.ordering) + 1)

    def records(self, step: int, scores: dict[str, dict[str, float]], n_items: dict[str, int], wall: float,
                bootstrap: StepBootstrap) -> list[Record]:
        domain = self.ordering[step - 1] if step else None
        rows = [(b, m, v, n_items.get(b)) for b, metrics in scores.items() for m, v in metrics.items()]
        rows += [("composite", name, value, None) for name, value in composites(scores).items()]
        return [
            Record(self.handle.name, self.handle.scale, self.method_name, ordering_label(self.ordering), self.seed,
                   step, domain, b, m, float(v), n, self.config_hash, wall, self.versions, *bootstrap.interval(b, m))
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
        scores, n_items, reused, scored, seconds = {}, {}, [], {}, {}
        for name in self.benchmarks_at(step):
            benchmark_started = time.time()
            key = self.starting_key(name, getattr(tokenizer, "chat_template", None)) if share else None
            result = self.starting_result(key) if key else None
            if result is None:
                result = get_benchmark(name).evaluate(lm, self.suite.eval.caps.get(name), self.suite.eval.max_new_tokens,
                                                      self.judge())
                if key:
                    # Scores as pairs: JSON files are written with sorted keys, and metric order must survive.
                    self.store.write_starting(key, {"scores": list(result.scores.items()), "items": result.items,
                                                    "run_id": self.run_id})
            else:
                reused.append(name)
            self.store.write_items(self.run_id, step, name, result.items)
            reached("after_benchmark")
            scores[name], n_items[name] = result.scores, len(result.items)
            scored[name] = (get_benchmark(name), result.items)
            seconds[name] = round(time.time() - benchmark_started, 2)
        bootstrap = step_bootstrap(scored, set(scores))
        if step == 0:
            scores.update(self.chance_scores(model, tokenizer))
        wall = time.time() - started
        extras = {**extras, "domain": self.ordering[step - 1] if step else None, "eval_seconds": wall,
                  "eval_seconds_by_benchmark": seconds, "eval_padding_share": lm.padding_share,
                  **({"eval_reused": reused} if reused else {})}
        self.store.write_bootstrap(self.run_id, step, bootstrap.payload())
        self.store.write_step(self.run_id, step, self.records(step, scores, n_items, wall, bootstrap), extras)

    def benchmarks_at(self, step: int) -> list[str]:
        """The suite's benchmarks, less ``eval.final_only`` at the steps between the first and the last."""
        between = 0 < step < len(self.ordering)
        return [b for b in self.suite.benchmarks if not (between and b in self.suite.eval.final_only)]

    def starting_key(self, benchmark: str, chat_template: str | None) -> str:
        """What a starting-model score depends on: the weights, the benchmark's code and data files,
        the prompt format (chat template), the judge, and how it is run."""
        settings = self.suite.eval
        return f"{self.handle.name}-{benchmark}-" + stable_hash({
            "weights": str(self.handle.chat), "tokenizer": str(self.handle.tokenizer), "max_length": self.handle.max_length,
            "benchmark": benchmark, "fingerprint": benchmark_fingerprint(benchmark), "chat_template": chat_template,
            "cap": settings.caps.get(benchmark), "max_new_tokens": settings.max_new_tokens,
            "batch_size": settings.batch_size, "judge": settings.judge, "judge_model": settings.judge_model,
            "threads": self.suite.threads_per_run, "versions": self.versions,
        })

    def chance_scores(self, model: torch.nn.Module, tokenizer) -> dict[str, dict[str, float]]:
        """Each benchmark's chance level for this model (benchmarks/chance.py), as ``chance:<name>``
        scores plus their ``chance:composite``; computed once per model and evaluation settings."""
        chance: dict[str, dict[str, float]] = {}
        for name in self.suite.benchmarks:
            key = "chance-" + self.starting_key(name, getattr(tokenizer, "chat_template", None))
            cached = self.store.read_starting(key)
            if cached is None:
                result = chance_result(get_benchmark(name), tokenizer, model.config.vocab_size, self.handle.max_length,
                                       self.suite.eval.caps.get(name), self.suite.eval.max_new_tokens, self.judge())
                cached = {"scores": list(result.scores.items()), "n": len(result.items)}
                self.store.write_starting(key, cached)
            chance[name] = dict(cached["scores"])
        return {CHANCE_PREFIX + name: values for name, values in {**chance, "composite": composites(chance)}.items()}

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

            warnings.warn(f"{path}: unreadable checkpoint ({err}); the run restarts from its last evaluation.", stacklevel=2)
            return None

    # ---- what the run trained (loadable with PEFT: harness.core.models.load_trained) -------------
    def keep_trained(self, step: int, kind: str, name: str, save: Callable[[Path], None]) -> None:
        """Save one artefact of ``kind`` (adapters, models, prepared) into trained/ and list it."""
        folder = self.store.trained_dir(self.run_id)
        atomic_write_dir(folder / name, save)
        manifest = read_json(folder / TRAINED_MANIFEST) or {
            "policy": self.adapter_policy, "start": str(self.handle.chat),
            "tokenizer": str(self.handle.tokenizer), "prepared": None, "adapters": {}, "models": {}}
        if kind == "prepared":
            manifest["prepared"] = name
        else:
            manifest[kind][str(step)] = name
        atomic_write_json(folder / TRAINED_MANIFEST, manifest)

    def keep_prepared(self, model: torch.nn.Module, tokenizer) -> None:
        """A ``prepare`` that changed the weights (Vaccine) starts the chain from its own model."""
        if weights_fingerprint(model) != self.starting_fingerprint:
            self.keep_full_model(0, model, tokenizer, kind="prepared")

    def keep_full_model(self, step: int, model: torch.nn.Module, tokenizer, kind: str = "models") -> None:
        def save(folder: Path) -> None:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)

        self.keep_trained(step, kind, "prepared" if kind == "prepared" else f"model-{step}", save)

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

    def methods_calibration(self) -> CalibrationSet:
        """The calibration set the method sees: benign requests answered as the suite's config hash
        says (templates, or the starting model's own answers from ``handle.helpful_answers``)."""
        declared = PRESETS[self.suite.model].calibration
        if (declared == "own-answers") != bool(self.handle.helpful_answers):
            raise ErosionError(f"Model preset {self.suite.model!r} declares calibration {declared!r} but its handle "
                               f"gives helpful_answers={self.handle.helpful_answers!r}. Fix: make the preset's "
                               f"'calibration' and its prepared handle agree (harness/orchestration/presets.py).")
        answers = json.loads(Path(self.handle.helpful_answers).read_text()) if self.handle.helpful_answers else None
        return with_helpful_answers(calibration_set(self.seed), answers)

    def _train_and_evaluate(self) -> None:
        torch.set_num_threads(self.suite.threads_per_run)
        set_seed(self.seed)
        tokenizer = load_tokenizer(self.handle.tokenizer)
        model = load_model(self.handle.chat, self.handle.dtype)
        self.starting_fingerprint = weights_fingerprint(model)
        method = build_method(self.method_name, self.suite.method_configs.get(self.method_name))
        settings = effective_settings(self.suite.training, method)
        self.adapter_policy = settings.adapter_policy  # the method's, where it requires one (what trained/ holds)
        n_domains = len(self.ordering)
        ctx = TrainContext(model=model, tokenizer=tokenizer, settings=settings, calibration=self.methods_calibration(),
                           seed=self.seed, domains=self.ordering,
                           checkpoints={"base": self.handle.base, "aligned": self.handle.chat})
        ctx.refusal_rate = self._probe_refusal(ctx)
        ctx.harm_verdicts = self._harm_verdicts()
        done = self.store.finished_steps(self.run_id, n_domains)
        checkpoint = self.load_checkpoint() if done else None
        if checkpoint is not None and checkpoint["after"] in (done - 1, done):
            start = checkpoint["after"]
            ctx.model = self._restore(ctx.model, checkpoint, settings)
            method.load_state_dict(checkpoint["method"])
            extras = checkpoint.get("extras", {})
            if start == done:  # the checkpoint's step was not evaluated yet
                self.evaluate(ctx.model, tokenizer, start, extras)
        else:
            done, start = 0, 0  # nothing usable: start over (a redone step overwrites atomically)
            method.prepare(ctx)
            # domains' adapters are seeded seed * 100 + k (k >= 1), the persistent one with seed
            before = train_before_sequence(ctx, method, self.seed * 100)
            extras = {"train": before} if before else {}
            self.keep_prepared(ctx.model, tokenizer)
            # Step 0 before a persistent adapter is attached: the model is then the starting model
            # itself, weights and code path, so it shares the starting model's evaluation bit for
            # bit (an attached B = 0 adapter changes no output beyond float rounding, ~1e-8).
            self.evaluate(ctx.model, tokenizer, 0, extras)
            if settings.adapter_policy == "persistent":
                ctx.model = attach_adapter(ctx.model, settings, self.seed)
            self.save_checkpoint(0, ctx.model, method.state_dict(), extras)
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
        settings = ctx.settings
        ctx.domain_examples = training_examples(ctx.domain, settings.examples_per_domain, self.seed)
        if settings.adapter_policy == "merge_per_domain":
            ctx.model = attach_adapter(ctx.model, settings, self.seed * 100 + k)
        stats = train_domain(ctx, method, ctx.domain_examples)
        self.keep_trained(k, "adapters", f"adapter-{k}", ctx.model.save_pretrained)
        if settings.adapter_policy == "merge_per_domain":
            ctx.model = merge_adapter(ctx.model)
        if self.suite.keep_models and k == len(self.ordering):
            # A persistent adapter stays attached for the evaluation: keep a merged copy.
            merged = ctx.model if settings.adapter_policy == "merge_per_domain" else copy.deepcopy(ctx.model).merge_and_unload()
            self.keep_full_model(k, merged, ctx.tokenizer)
        return {"train": stats, "events": ctx.events, "train_seconds": time.time() - started,
                **method.domain_report(ctx)}

    def _probe_refusal(self, ctx: TrainContext):
        """Refusal rate (%) of the current model on harmful prompts (for CSM-style hooks)."""
        from benchmarks.harmbench import refusal_items, refusal_scores
        from harness.core.safety_data import HarmfulRequest

        def measure(prompts: list[str]) -> float:
            lm = ChatLM(ctx.model, ctx.tokenizer, max_length=self.handle.max_length, batch_size=self.suite.eval.batch_size,
                        device=device())
            requests = [HarmfulRequest(str(i), p) for i, p in enumerate(prompts)]
            items = refusal_items(lm, requests, self.suite.eval.max_new_tokens, self.judge())
            return refusal_scores(items)["refusal_rate"]

        return measure

    def _harm_verdicts(self):
        """The suite's harm classifier as (prompt, response) -> verdicts; None under the refusal judge,
        which only spots refusal phrases and cannot call a response harmful."""
        if self.suite.eval.judge == "refusal":
            return None
        from benchmarks.judges import JudgeItem

        def verdicts(pairs: list[tuple[str, str]]) -> list[str]:
            return list(self.judge().verdicts([JudgeItem(prompt, response) for prompt, response in pairs]))

        return verdicts
