// Click a header to sort by that column (again to reverse). Cells sort on data-sort (numbers as
// numbers); cells without one ("failed", "missing") always go last; pinned rows stay on top.
(function () {
  function key(row, col) {
    var cell = row.cells[col];
    if (!cell || !cell.hasAttribute('data-sort')) return null;
    var raw = cell.getAttribute('data-sort');
    var num = Number(raw);
    return raw !== '' && !isNaN(num) ? num : raw.toLowerCase();
  }
  function compare(a, b, ascending) {
    if (a === null || b === null) return (a === null) - (b === null);
    if (typeof a !== typeof b) { a = String(a); b = String(b); }
    var order = a < b ? -1 : a > b ? 1 : 0;
    return ascending ? order : -order;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var headers = table.querySelectorAll('thead th');
    headers.forEach(function (th, col) {
      th.addEventListener('click', function () {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        headers.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var pinned = rows.filter(function (r) { return r.classList.contains('pinned'); });
        var rest = rows.filter(function (r) { return !r.classList.contains('pinned'); });
        rest.sort(function (a, b) { return compare(key(a, col), key(b, col), ascending); });
        pinned.concat(rest).forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
