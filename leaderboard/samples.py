"""The sample viewer: every stored generation on one self-contained page beside the leaderboard
(what it lists and filters: docs/leaderboard.md, "Sample viewer").

Like the leaderboard page it opens from disk: the items are embedded as a JSON data block, the script
and styles are inline, and the script writes item text with ``textContent`` only, so a generation is
never read as markup.
"""
from __future__ import annotations

import json
from html import escape

import pandas as pd

from harness.core.store import ResultStore
from leaderboard.html import asset, page_head

# Fields of a generation on the page; a benchmark's item may lack some (HumanEval has no verdict).
FIELDS = ["run_id", "model", "scale", "method", "ordering", "seed", "step", "after", "benchmark", "id", "prompt", "output",
          "verdict", "degenerate_reason", "refusal_nll"]


def generations(store: ResultStore, runs: pd.DataFrame) -> list[dict[str, object]]:
    """Every stored item with a response (``output``) of the given runs, with its run's identity and
    the domain its step followed; absent fields as None."""
    items = store.items_frame()
    if items.empty or "output" not in items:
        return []
    found = items[items["output"].notna()].merge(runs[["run_id", "model", "scale", "method", "ordering", "seed"]], on="run_id")
    found["after"] = [domains[step - 1] if 0 < step <= len(domains) else ""
                      for domains, step in zip(found["ordering"].str.split(">"), found["step"], strict=True)]
    table = found.reindex(columns=FIELDS).sort_values(["method", "ordering", "seed", "step", "benchmark", "id"], kind="stable")
    return json.loads(table.to_json(orient="records"))


def filter_html(name: str, label: str, extra: tuple[str, ...] = ()) -> str:
    options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in extra)
    return f'<label>{escape(label)} <select id="filter-{name}"><option value="">all</option>{options}</select></label>'


def head_html(headers: list[str]) -> str:
    return "<thead><tr>" + "".join(f'<th scope="col">{escape(h)}</th>' for h in headers) + "</tr></thead>"


def page(items: list[dict[str, object]], results: str) -> str:
    """The viewer page for ``items`` (generations()), naming the results folder they came from."""
    data = json.dumps(items, sort_keys=True).replace("</", "<\\/")  # a response may contain "</script>"
    filters = "".join([filter_html("run", "Run"), filter_html("method", "Method"), filter_html("step", "Step"),
                       filter_html("benchmark", "Benchmark"), filter_html("verdict", "Verdict", ("not refusal",))])
    listing = ["Method", "Ordering", "Seed", "Step", "Benchmark", "Item", "Request", "Response", "Verdict",
               "Degenerate reason", "Refusal NLL"]
    compare = ["Ordering", "Seed", "Step", "Benchmark", "Item", "Request", "Response A", "Verdict A", "Response B", "Verdict B"]
    return f"""{page_head("erosion-bench generations", asset("page.css") + asset("samples.css"))}
<h1>erosion-bench generations</h1>
<p>Every stored generation of the current runs in {escape(results)}: request, response, the judge's verdict, the
degenerate detector's reason and the refusal NLL. Filter below; compare two methods on the same items further down.</p>
<div class="filters">{filters}</div>
<p id="samples-count"></p>
<div class="scroll"><table id="samples">{head_html(listing)}<tbody id="samples-body"></tbody></table></div>
<h2>Side by side</h2>
<p>Method A against method B on the same items (same ordering, seed, step, benchmark and item); the filters above
(except Method) choose the items.</p>
<div class="filters"><label>A <select id="compare-a"><option value="">choose</option></select></label>
<label>B <select id="compare-b"><option value="">choose</option></select></label></div>
<div class="scroll"><table id="compare">{head_html(compare)}<tbody id="compare-body"></tbody></table></div>
<script type="application/json" id="samples-data">{data}</script>
<script>{asset("samples.js")}</script>
</body>
</html>
"""
