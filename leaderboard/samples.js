// The sample viewer. Filters read the select elements by id; the step filter names the domain just
// trained ("after code"), the same in every ordering. Every row is built with textContent (never innerHTML).
(function () {
  var items = JSON.parse(document.getElementById('samples-data').textContent);
  var filters = ['run', 'method', 'step', 'benchmark', 'verdict'];
  var shown = {run: function (i) { return i.run_id; }, method: function (i) { return i.method; },
               step: function (i) { return i.after ? 'after ' + i.after : 'start'; }, benchmark: function (i) { return i.benchmark; },
               verdict: function (i) { return i.verdict || ''; }};
  function stepLabel(i) { return i.step + ' · ' + (i.after ? 'after ' + i.after : 'start'); }
  function el(tag, text, css) { var e = document.createElement(tag); e.textContent = text == null ? '' : String(text); if (css) e.className = css; return e; }
  function fill(id, values) {
    var select = document.getElementById(id);
    values.sort().forEach(function (v) { select.appendChild(new Option(v, v)); });
    select.addEventListener('change', draw);
  }
  filters.forEach(function (f) {
    var seen = {}; items.forEach(function (i) { seen[shown[f](i)] = true; });
    fill('filter-' + f, Object.keys(seen));
  });
  fill('compare-a', Object.keys(items.reduce(function (s, i) { s[i.method] = true; return s; }, {})));
  fill('compare-b', Array.prototype.map.call(document.getElementById('compare-a').options, function (o) { return o.value; }).filter(Boolean));
  function chosen(f) { return document.getElementById('filter-' + f).value; }
  function passes(i, skipMethod) {
    return filters.every(function (f) {
      var want = chosen(f);
      if (!want || (skipMethod && f === 'method')) return true;
      if (f === 'verdict' && want === 'not refusal') return i.verdict !== 'refusal';
      return shown[f](i) === want;
    });
  }
  function row(cells) { var tr = document.createElement('tr'); cells.forEach(function (c) { tr.appendChild(c); }); return tr; }
  function verdictCell(i) { return el('td', i ? i.verdict : 'missing', i ? 'verdict-' + i.verdict : 'absent-missing'); }
  function drawList() {
    var body = document.getElementById('samples-body'); body.textContent = '';
    var found = items.filter(function (i) { return passes(i, false); });
    found.forEach(function (i) {
      body.appendChild(row([el('td', i.method), el('td', i.ordering), el('td', i.seed), el('td', stepLabel(i)), el('td', i.benchmark),
        el('td', i.id), el('td', i.prompt, 'text'), el('td', i.output, 'text'), verdictCell(i), el('td', i.degenerate_reason),
        el('td', i.refusal_nll == null ? '' : Number(i.refusal_nll).toFixed(3))]));
    });
    document.getElementById('samples-count').textContent = found.length + ' of ' + items.length + ' generations';
  }
  function key(i) { return [i.ordering, i.seed, i.step, i.benchmark, i.id].join('|'); }
  function drawComparison() {
    var a = document.getElementById('compare-a').value, b = document.getElementById('compare-b').value;
    var body = document.getElementById('compare-body'); body.textContent = '';
    if (!a || !b) return;
    var others = {}; items.forEach(function (i) { if (i.method === b) others[key(i)] = i; });
    items.filter(function (i) { return i.method === a && passes(i, true); }).forEach(function (i) {
      var o = others[key(i)];
      body.appendChild(row([el('td', i.ordering), el('td', i.seed), el('td', stepLabel(i)), el('td', i.benchmark), el('td', i.id),
        el('td', i.prompt, 'text'), el('td', i.output, 'text'), verdictCell(i), el('td', o ? o.output : 'missing', 'text'), verdictCell(o)]));
    });
  }
  function draw() { drawList(); drawComparison(); }
  draw();
})();
