"""results.json -> results.md: the target lines first, then one section per item."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def training(s: dict[str, Any]) -> list[str]:
    rows = []
    for name, m in s["methods"].items():
        one_offs = ", ".join(f"{k} {v:.2f}" for k, v in m["one_offs_s"].items() if v >= 0.005) or "-"
        hooks = ", ".join(f"{k} {1000 * v:.1f}" for k, v in m["hook_s_per_step"].items()) or "-"
        rows.append([name, f"{1000 * m['step_s']:.1f}", f"{m['ratio_to_standard']:.3f}", hooks, one_offs,
                     f"{m['domain_s']:.0f}", f"{m['domain_ratio_to_standard']:.2f}"])
    return [f"World `{s['world']}`, default suite training settings (batch {s['settings']['batch_size']} x accum "
            f"{s['settings']['grad_accum']}, max_seq_len {s['settings']['max_seq_len']}); second domain of a sequence; "
            f"{s['rounds']} rotating rounds x {s['timed_steps_per_round']} timed steps; ratios are within-round medians.",
            "SafeAnchor's subspace recomputation is off in the timed steps and listed as `ssi_refresh`; the domain "
            f"estimate is {s['domain_steps']} steps + per-domain one-offs + {s['ssi_recomputes_per_domain']} recomputes "
            "(default schedule). `safeanchor_osca` = projection only (gamma 0, same subspaces). "
            f"Vaccine's `prepare` ran {s['methods']['vaccine']['config']['steps']} alignment steps (default 200).", "",
            *_table(["method", "step (ms)", "ratio to Standard LoRA", "in hooks (ms/step)", "one-offs (s, >= 5 ms)",
                     "domain est. (s)", "domain ratio"], rows)]


def _ssi_rows(points: list[dict[str, Any]]) -> list[list[Any]]:
    return [[p["n"], p["p"], p["rank_k"], f"{p['seconds']['median']:.3f}", f"{1e6 * p['seconds']['median'] / p['p']:.2f}",
             f"{p['g_mib']:.0f}", f"{p['extra_mib']:.0f}", "x".join(map(str, p["largest_tensor"]))] for p in points]


def ssi(s: dict[str, Any]) -> list[str]:
    header = ["N", "p", "k", "time (s)", "us per p", "G (MiB)", "peak above G (MiB)", "largest tensor"]
    paper, iso, g = s["paper"], s["isotropic_paper"], s["per_example_grads"]
    slopes = s["loglog_slopes"]
    return [f"`fisher_subspace` (rho {s['rho']}) on synthetic G, decaying spectrum; memory: {paper['memory_how']}.",
            f"Paper size N={paper['n']}, p={paper['p']}: {paper['seconds']['median']:.2f} s, +{paper['extra_mib']:.0f} MiB "
            f"({paper['extra_over_g']:.1f} x G; process peak RSS {paper['peak_rss_mib']:.0f} MiB); "
            f"isotropic worst case: k={iso['rank_k']}, {iso['seconds']['median']:.2f} s, "
            f"+{iso['extra_mib']:.0f} MiB. A p x p float32 matrix would be {paper['p_squared_float32_gib']:.0f} GiB.",
            f"Log-log slopes: time ~ p^{slopes['time_vs_p']:.2f}, memory ~ p^{slopes['memory_vs_p']:.2f}, "
            f"time ~ N^{slopes['time_vs_n']:.2f}, memory ~ N^{slopes['memory_vs_n']:.2f}.",
            f"Note: `collect_grads` keeps every layer's G in host memory ({s['all_layers_g_gib_7b']:.1f} GiB for a 7B model's "
            "128 LoRA layers at N=500); the accelerator holds one layer's G at a time.",
            "", "By N:", "", *_table(header, _ssi_rows(s["by_n"])), "", "By p:", "", *_table(header, _ssi_rows(s["by_p"])), "",
            f"Per-example gradients ({g['world']}, {g['n_examples']} examples, {g['lora_layers']} layers, p={g['p_per_layer']}): "
            f"batched (batch {g['batch_size']}) {g['batched_s']['median']:.3f} s "
            f"vs one backward each {g['looped_s']['median']:.3f} s "
            f"= {g['speedup']:.2f}x; max relative difference {g['max_relative_difference']:.1e}."]


def evaluation(s: dict[str, Any]) -> list[str]:
    ll, gen, reuse = s["loglikelihood"], s["generation"], s["model_reuse"]
    return [f"World `{s['world']}`.",
            f"- Log-likelihood, TruthfulQA MC, {ll['cap']} questions ({ll['requests']} requests, batch {ll['batch_size']}): ours "
            f"{ll['ours_s']['median']:.3f} s, lm-eval HFLM {ll['lm_eval_s']['median']:.3f} s "
            f"-> lm-eval takes {ll['lm_eval_over_ours']:.2f}x; "
            f"scores ours {ll['ours_scores']} vs lm-eval {ll['lm_eval_scores']}; "
            f"padding share {100 * ll['padding_share']:.1f} %.",
            f"- Generation ({gen['prompts']} HarmBench prompts, {gen['max_new_tokens']} new tokens max): "
            f"batched (batch {gen['batch_size']}) "
            f"{gen['batched_tokens_per_s']['median']:.0f} tokens/s, "
            f"one at a time {gen['one_at_a_time_tokens_per_s']['median']:.0f} tokens/s "
            f"({gen['speedup']:.1f}x); prompt padding share {100 * gen['padding_share']:.1f} %; "
            f"identical outputs {100 * gen['identical_outputs']:.0f} %.",
            f"- Model reuse: {reuse['model_loads']} `load_model` call(s) for {reuse['evaluations']} evaluations of one run "
            f"({reuse['how']})."]


def end_to_end(s: dict[str, Any]) -> list[str]:
    build, step = s["build"], s["standard_lora_step_s"]
    built = (f"pretrain {build['pretrain_seconds']:.0f} s + align {build['align_seconds']:.0f} s "
             f"({build['torch_threads']} thread(s), "
             f"{build['parameters']} parameters)" if build["available"] else f"no build.json at {build['path']}")
    shares = ", ".join(f"{d} {100 * v:.1f} %" for d, v in s["padding_share"].items())
    return [f"World `{s['world']}`, suite `{s['suite']}` ({' -> '.join(s['domains'])}).", f"- World build: {built}.",
            f"- Standard LoRA step: median {step['median']:.3f} s (n={step['n']}, min {step['min']:.3f}, max {step['max']:.3f}); "
            f"a {s['domain_steps']}-step domain ~ {s['standard_lora_domain_s_estimate']:.0f} s of training.",
            f"- Training padding share over a domain's micro-batches: {shares}."]


def ray(s: dict[str, Any]) -> list[str]:
    start, tasks, suite = s["start_stop"], s["tasks"], s["suite"]
    compared = (suite["error"] if "error" in suite else
                f"run_ray {suite['ray_s']['median']:.1f} s vs run_local {suite['local_s']['median']:.1f} s "
                f"= {suite['ray_over_local']:.2f}x "
                f"(all runs done: {suite['all_done']})")
    return [f"- Cluster: ray.init {start['init_s']['median']:.2f} s, ray.shutdown {start['shutdown_s']['median']:.2f} s "
            f"(n={start['init_s']['n']}).",
            f"- No-op tasks: {tasks['throughput_ms_per_task']:.2f} ms/task with {tasks['tasks']} in flight; "
            f"{tasks['round_trip_ms']['median']:.2f} ms round trip one at a time.",
            f"- Tiny suite, {suite['runs']} runs, {suite['threads_per_run']} thread per run: {compared}."]


def gpu(s: dict[str, Any]) -> list[str]:
    if not s["measured"]:
        return [f"not measured: {s['reason']}"]
    return [f"{s['device']}: {s['layers']} 7B-shaped blocks, {s['dtype']}, batch {s['batch_size']} x {s['seq_len']}: "
            f"{s['step_s']['median']:.3f} s/step, {s['tokens_per_s']:.0f} tokens/s, peak {_f(s['peak_gpu_gib'])} GiB."]


SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "training": ("1. Training step cost per method", training),
    "ssi": ("2. SSI (Fisher subspace) at paper size", ssi),
    "eval": ("3. Evaluation", evaluation),
    "e2e": ("4. End to end (micro suite pieces)", end_to_end),
    "ray": ("5. Ray overhead", ray),
    "gpu": ("6. GPU", gpu),
}


def machine(m: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return [f"- CPU: {m['cpu_model']}; {m['cpu_count']} cores ({m['usable_cpus']} usable), {m['memory_gib']} GiB; "
            f"torch threads {m['torch_threads']}; GPU: {m['cuda'] or 'none'}.",
            f"- Python {m['python']} on {m['platform']}; {versions}."]


def _load(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def runs(records: list[dict[str, Any]]) -> list[str]:
    """One line per invocation that contributed items (load averages: 1/5/15 min, at start -> end;
    above the core count, other work shared the cores)."""
    return [f"- {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['started_at']))}: {', '.join(r['items'])} in "
            f"{r['wall_s'] / 60:.1f} min; load average {_load(r['load_average_at_start'])} -> {_load(r['load_average_at_end'])}"
            for r in records]


def render(results: dict[str, Any]) -> str:
    quick = " (--quick: sizes are for the smoke test, numbers are not meaningful)" if results["options"]["quick"] else ""
    lines = ["# erosion-bench performance benchmarks", "", f"Runs{quick}:", "", *runs(results["runs"]), "",
             *machine(results["machine"]), "", "## Targets (issue 7)", ""]
    lines += [f"- {t['line']}" for t in results["targets"]]
    for name, section in results["items"].items():
        title, render_section = SECTIONS[name]
        lines += ["", f"## {title} ({section['wall_s']:.0f} s)", ""]
        lines += [f"FAILED:\n\n```\n{section['error']}\n```"] if "error" in section else render_section(section)
    return "\n".join(lines) + "\n"
