// The fleet page: cards or table (the user's choice, sort and filters kept in localStorage), and
// live updates as readings and alerts arrive (app.js turns server-sent frames into "tw:printer").
(function () {
  "use strict";
  var table = document.getElementById("fleet-table");
  var cards = document.getElementById("fleet-cards");
  if (!table || !cards) return;
  var KEY = "tonerwatch.fleet";
  var PAGE = 100;
  var RANK = { offline: 0, critical: 1, attention: 2, pending: 3, ok: 4, paused: 5 };
  var SEV = { critical: 0, warning: 1, info: 2, ok: 3 };
  var labels = JSON.parse(table.dataset.labels || "{}");
  var tbody = table.querySelector("tbody");
  var search = document.getElementById("ft-search");
  var count = document.getElementById("ft-count");
  var rows = [];          // every printer of the toolbar's site/group, as /fleet.json gives them
  var loaded = false;
  var page = 0;

  var state = load();
  if (table.dataset.status) state.filters.status = table.dataset.status;
  if (table.dataset.q && !state.q) state.q = table.dataset.q;

  function load() {
    var s = null;
    try { s = JSON.parse(window.localStorage.getItem(KEY) || "null"); } catch (e) { s = null; }
    s = s && typeof s === "object" ? s : {};
    return {
      view: s.view === "table" ? "table" : "cards",
      sort: typeof s.sort === "string" ? s.sort : "status",
      dir: s.dir === "desc" ? "desc" : "asc",
      filters: s.filters && typeof s.filters === "object" ? s.filters : {},
      q: typeof s.q === "string" ? s.q : ""
    };
  }
  function save() {
    try { window.localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode */ }
  }

  // --- view switch ---------------------------------------------------------------------------------
  function showView(view) {
    state.view = view;
    document.querySelectorAll(".view-switch button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.view === view));
    });
    table.hidden = view !== "table";
    cards.hidden = view === "table";
    document.body.dataset.fleetView = view;
    document.querySelectorAll(".cards-only").forEach(function (el) { el.hidden = view === "table"; });
    if (view === "table") {
      if (!loaded) fetchAll(); else draw();
    }
    save();
  }
  document.querySelectorAll(".view-switch button").forEach(function (b) {
    b.addEventListener("click", function () { showView(b.dataset.view); });
  });

  // --- the table's data ----------------------------------------------------------------------------
  function src(extra) {
    var base = table.dataset.src;
    return extra ? base + (base.indexOf("?") >= 0 ? "&" : "?") + extra : base;
  }
  function fetchAll() {
    return fetch(src(), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        rows = data.rows;
        loaded = true;
        table.dataset.cut = data.cut ? "true" : "false";
        draw();
      })
      .catch(function (err) { count.textContent = "Could not load the printers (" + err.message + ")"; });
  }

  // --- filters, search, sort -----------------------------------------------------------------------
  function text(v) { return v == null ? "" : String(v).toLowerCase(); }
  function haystack(r) {
    return text([r.name, r.site, r.groups.join(" "), r.vendor, r.model, r.address, r.status_label,
      r.reasons.map(function (x) { return x[0]; }).join(" ")].join(" "));
  }
  function ageSeconds(r) {
    return r.last_seen ? (Date.now() - Date.parse(r.last_seen)) / 1000 : Infinity;
  }
  function keep(r) {
    var f = state.filters;
    if (state.q && haystack(r).indexOf(state.q.toLowerCase()) < 0) return false;
    if (f.name && text(r.name).indexOf(text(f.name)) < 0) return false;
    if (f.site && text(r.site + " " + r.site_id).indexOf(text(f.site)) < 0) return false;
    if (f.groups && text(r.groups.join(" ")).indexOf(text(f.groups)) < 0) return false;
    if (f.model && text(r.vendor + " " + r.model).indexOf(text(f.model)) < 0) return false;
    if (f.address && text(r.address).indexOf(text(f.address)) < 0) return false;
    if (f.status && r.status !== f.status) return false;
    if (f.worst) {
      var w = r.worst;
      if (f.worst === "none") { if (w) return false; }
      else if (f.worst === "le20") { if (!w || w.left > 20) return false; }
      else if (!w || w.severity !== f.worst) return false;
    }
    if (f.days_left && (r.days_left == null || r.days_left > Number(f.days_left))) return false;
    if (f.last_seen) {
      if (f.last_seen === "never") { if (r.last_seen) return false; }
      else if (ageSeconds(r) <= Number(f.last_seen)) return false;
    }
    if (f.pages && !(r.pages != null && r.pages >= Number(f.pages))) return false;
    return true;
  }
  function key(r) {
    switch (state.sort) {
      case "status": return [RANK[r.status] == null ? 9 : RANK[r.status], r.reasons.length ? SEV[r.reasons[0][1]] : 9];
      case "worst": return r.worst ? [r.worst.left] : null;
      case "days_left": return r.days_left == null ? null : [r.days_left];
      case "last_seen": return r.last_seen ? [Date.parse(r.last_seen)] : null;
      case "pages": return r.pages == null ? null : [r.pages];
      case "groups": return r.groups.length ? [text(r.groups.join(", "))] : null;
      case "model": return (r.vendor || r.model) ? [text(r.vendor + " " + r.model)] : null;
      case "address": return [r.address.split(".").map(function (x) { return ("000" + x).slice(-3); }).join(".")];
      default: return r[state.sort] == null || r[state.sort] === "" ? null : [text(r[state.sort])];
    }
  }
  function compare(a, b) {
    var ka = key(a), kb = key(b);
    if (ka === null || kb === null) {   // empty values last, whichever the direction
      if (ka === kb) return text(a.name) < text(b.name) ? -1 : 1;
      return ka === null ? 1 : -1;
    }
    var d = state.dir === "desc" ? -1 : 1;
    for (var i = 0; i < ka.length; i++) {
      if (ka[i] < kb[i]) return -d;
      if (ka[i] > kb[i]) return d;
    }
    return text(a.name) < text(b.name) ? -1 : (text(a.name) > text(b.name) ? 1 : 0);
  }

  // --- drawing -------------------------------------------------------------------------------------
  function el(tag, cls, content) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content != null) e.textContent = String(content);
    return e;
  }
  function ago(iso) {
    if (!iso) return "never";
    var s = (Date.now() - Date.parse(iso)) / 1000;
    if (s < 60) return "just now";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    var d = Math.floor(s / 86400);
    return d + (d > 1 ? " days" : " day") + " ago";
  }
  function rowOf(r) {
    var tr = el("tr", "status-" + r.status);
    tr.dataset.printerId = r.id;
    var name = el("td", "name");
    var a = el("a", null, r.name);
    a.href = "/printers/" + encodeURIComponent(r.id);
    name.appendChild(a);
    if (r.alerts) name.appendChild(el("span", "meta", " · " + r.alerts + (r.alerts === 1 ? " alert" : " alerts")));
    tr.appendChild(name);
    tr.appendChild(el("td", null, r.site));
    tr.appendChild(el("td", null, r.groups.join(", ")));
    tr.appendChild(el("td", null, [r.vendor, r.model].filter(Boolean).join(" · ") || "—"));
    tr.appendChild(el("td", "address", r.address));
    var st = el("td", "status");
    st.appendChild(el("span", "pill " + r.status, r.status_label));
    if (r.reasons.length) {
      var why = el("div", "why");
      r.reasons.slice(0, 2).forEach(function (x) { why.appendChild(el("span", "reason " + x[1], x[0])); });
      if (r.reasons.length > 2) why.appendChild(el("span", "reason more", "+" + (r.reasons.length - 2)));
      st.appendChild(why);
    }
    tr.appendChild(st);
    var w = el("td", "worst");
    if (r.worst) {
      w.className = "worst sev-" + r.worst.severity;
      var sw = el("span", "swatch");
      sw.style.background = r.worst.colour;
      w.appendChild(sw);
      w.appendChild(document.createTextNode(r.worst.name + " "));
      w.appendChild(el("b", null, r.worst.text));
    } else w.appendChild(el("span", "muted", "not reported"));
    tr.appendChild(w);
    tr.appendChild(el("td", "num", r.days_left == null ? "—" : Math.round(r.days_left)));
    var seen = el("td", null, ago(r.last_seen));
    if (r.last_seen) seen.title = r.last_seen;
    tr.appendChild(seen);
    tr.appendChild(el("td", "num", r.pages == null ? "—" : r.pages.toLocaleString("en")));
    return tr;
  }

  function counters() {
    var n = {};
    rows.forEach(function (r) { n[r.status] = (n[r.status] || 0) + 1; });
    var box = document.querySelector("#fleet-summary .counters");
    var total = document.getElementById("fleet-total");
    if (total) total.textContent = rows.length + (rows.length === 1 ? " printer" : " printers");
    if (!box) return;
    box.textContent = "";
    Object.keys(RANK).forEach(function (st) {
      if (!n[st]) return;
      var a = el("a", "pill " + st + " counter", n[st] + " " + String(labels[st] || st).toLowerCase());
      a.href = "/?status=" + st;
      a.dataset.status = st;
      a.setAttribute("aria-pressed", String(state.filters.status === st));
      a.title = "Show only: " + String(labels[st] || st).toLowerCase();
      box.appendChild(a);
    });
  }

  function syncInputs() {
    search.value = state.q || "";
    table.querySelectorAll("[data-filter]").forEach(function (i) { i.value = state.filters[i.dataset.filter] || ""; });
    table.querySelectorAll("th[aria-sort]").forEach(function (th) {
      var k = th.querySelector("button").dataset.sort;
      th.setAttribute("aria-sort", k === state.sort ? (state.dir === "asc" ? "ascending" : "descending") : "none");
    });
  }

  function draw() {
    if (!loaded) return;
    syncInputs();
    counters();
    var shown = rows.filter(keep).sort(compare);
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    var frag = document.createDocumentFragment();
    shown.slice(page * PAGE, (page + 1) * PAGE).forEach(function (r) { frag.appendChild(rowOf(r)); });
    tbody.textContent = "";
    tbody.appendChild(frag);
    var from = shown.length ? page * PAGE + 1 : 0;
    count.textContent = shown.length === rows.length
      ? rows.length + " printers" + (pages > 1 ? " · " + from + "–" + Math.min(shown.length, (page + 1) * PAGE) : "")
      : shown.length + " of " + rows.length + " printers match" + (pages > 1 ? " · " + from + "–" + Math.min(shown.length, (page + 1) * PAGE) : "");
    if (table.dataset.cut === "true") count.textContent += " (the first " + rows.length + " only)";
    document.getElementById("ft-prev").disabled = page === 0;
    document.getElementById("ft-next").disabled = page >= pages - 1;
    document.getElementById("ft-prev").parentElement.hidden = pages <= 1;
    table.dataset.shown = String(shown.length);
  }

  table.querySelectorAll("th button[data-sort]").forEach(function (b) {
    b.addEventListener("click", function () {
      if (state.sort === b.dataset.sort) state.dir = state.dir === "asc" ? "desc" : "asc";
      else { state.sort = b.dataset.sort; state.dir = "asc"; }
      page = 0; save(); draw();
    });
  });
  table.querySelectorAll("[data-filter]").forEach(function (i) {
    i.addEventListener(i.tagName === "SELECT" ? "change" : "input", function () {
      if (i.value) state.filters[i.dataset.filter] = i.value; else delete state.filters[i.dataset.filter];
      page = 0; save(); draw();
    });
  });
  search.addEventListener("input", function () { state.q = search.value; page = 0; save(); draw(); });
  document.getElementById("ft-clear").addEventListener("click", function () {
    state.filters = {}; state.q = ""; page = 0; save(); draw();
  });
  document.getElementById("ft-prev").addEventListener("click", function () { page = Math.max(0, page - 1); draw(); });
  document.getElementById("ft-next").addEventListener("click", function () { page += 1; draw(); });

  // The summary counters filter by status: in the table here, in the cards by their link.
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.counter") : null;
    if (!a || state.view !== "table") return;
    ev.preventDefault();
    if (state.filters.status === a.dataset.status) delete state.filters.status;
    else state.filters.status = a.dataset.status;
    page = 0; save(); draw();
  });

  // --- live ----------------------------------------------------------------------------------------
  var changed = {};
  var timer = null;
  var updates = 0;
  function refreshTable(ids) {
    if (ids.length > 200) return fetchAll();
    return fetch(src("ids=" + ids.map(encodeURIComponent).join(",")), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        var fresh = {};
        data.rows.forEach(function (r) { fresh[r.id] = r; });
        var seen = {};
        rows = rows.map(function (r) { seen[r.id] = true; return fresh[r.id] || r; })
          .filter(function (r) { return ids.indexOf(r.id) < 0 || fresh[r.id]; });
        data.rows.forEach(function (r) { if (!seen[r.id]) rows.push(r); });
        draw();
      });
  }
  function refreshCards() {
    // The cards are drawn by the server: fetch this very page and swap the cards and counters in.
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("fleet-cards");
        var summary = doc.getElementById("fleet-summary");
        if (fresh) cards.innerHTML = fresh.innerHTML;
        if (summary) document.getElementById("fleet-summary").innerHTML = summary.innerHTML;
        document.querySelectorAll(".cards-only").forEach(function (e) { e.hidden = state.view === "table"; });
      });
  }
  function flush() {
    timer = null;
    var ids = Object.keys(changed);
    changed = {};
    if (!ids.length) return;
    var work = [];
    if (loaded) work.push(refreshTable(ids));
    if (state.view === "cards" || !loaded) work.push(refreshCards());
    else cardsStale = true;
    Promise.all(work).then(function () {
      updates += 1;
      document.body.dataset.fleetUpdates = String(updates);
    }).catch(function () { /* the next update tries again */ });
  }
  var cardsStale = false;
  document.addEventListener("tw:printer", function (ev) {
    var id = ev.detail && ev.detail.printer_id;
    if (!id) return;
    changed[id] = true;
    if (!timer) timer = setTimeout(flush, 1000);  // readings come in bursts: one fetch a second
  });
  document.querySelectorAll(".view-switch button[data-view=cards]").forEach(function (b) {
    b.addEventListener("click", function () { if (cardsStale) { cardsStale = false; refreshCards(); } });
  });

  showView(state.view);
  document.body.dataset.fleetReady = "true";
})();
