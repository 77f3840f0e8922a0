// Toasts for alerts as they happen (server-sent events), REST-backed forms, live discovery progress.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.content : "";

  // --- toasts ------------------------------------------------------------------------------------
  var url = document.body.dataset.stream;
  var box = document.getElementById("toasts");

  function toast(data) {
    var el = document.createElement("div");
    el.className = "toast " + (data.severity || "info");
    el.setAttribute("role", "status");
    var link = document.createElement("a");
    link.href = data.url || "/alerts";
    link.textContent = data.title || "Printer";
    var msg = document.createElement("p");
    msg.textContent = (data.kind === "resolved" ? "Resolved: " : "") + (data.message || "");
    el.appendChild(link);
    el.appendChild(msg);
    box.appendChild(el);
    notify(data, msg.textContent);
    setTimeout(function () { el.remove(); }, data.severity === "critical" ? 20000 : 10000);
    while (box.children.length > 5) box.firstChild.remove();
  }

  // A desktop notification too, when the user allowed them (the toast shows either way).
  function notify(data, text) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      var n = new Notification(data.title || "TonerWatch", { body: text });
      n.onclick = function () { window.focus(); window.location.href = data.url || "/alerts"; };
    } catch (e) { /* some browsers only allow notifications from a service worker */ }
  }

  var notifyButton = document.getElementById("notify-enable");
  if (notifyButton && "Notification" in window && Notification.permission === "default") {
    notifyButton.hidden = false;
    notifyButton.addEventListener("click", function () {
      Promise.resolve(Notification.requestPermission()).then(function (answer) {
        notifyButton.hidden = answer !== "default";
      });
    });
  }

  if (url && window.EventSource) {
    var source = new EventSource(url, { withCredentials: true });
    // Pages that show printers (the fleet) listen for "tw:printer": a printer's data changed.
    var changed = function (data) {
      document.dispatchEvent(new CustomEvent("tw:printer", { detail: data }));
    };
    source.addEventListener("alert", function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; /* a malformed frame is skipped */ }
      toast(data);
      changed(data);
    });
    source.addEventListener("printer", function (ev) {
      try { changed(JSON.parse(ev.data)); } catch (e) { /* a malformed frame is skipped */ }
    });
    source.addEventListener("open", function () { document.body.dataset.live = "connected"; });
  }

  // --- REST calls with the session cookie (writes carry the CSRF token) ---------------------------
  function api(method, path, body, extraHeaders) {
    var opts = { method: method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    Object.keys(extraHeaders || {}).forEach(function (k) { opts.headers[k] = extraHeaders[k]; });
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (resp) {
      if (resp.status === 204) return null;
      return resp.json().then(function (data) {
        if (!resp.ok) throw new Error(data.error || ("HTTP " + resp.status));
        return data;
      });
    });
  }

  function showError(id, err) {
    var el = document.getElementById(id);
    if (!el) { window.alert(err.message); return; }
    el.textContent = err.message;
    el.hidden = false;
  }

  // Fields say how they are sent: data-number (a number), data-list (one entry a line or comma),
  // data-json (parsed); names in the form's data-arrays are always lists (checkboxes: [] if none).
  function formBody(form) {
    var body = {};
    (form.dataset.arrays || "").split(" ").forEach(function (key) { if (key) body[key] = []; });
    new FormData(form).forEach(function (value, key) {
      var field = form.elements[key];
      var data = field && field.dataset ? field.dataset : {};
      if (Array.isArray(body[key]) && data.list === undefined) {
        if (value !== "") body[key].push(value);
        return;
      }
      if (value === "") return;
      var v;
      if (key === "scopes") v = String(value).split(" ");
      else if (key === "expires_in_days" || data.number !== undefined) v = Number(value);
      else if (data.list !== undefined) {
        v = String(value).split(/[\n,;]+/).map(function (x) { return x.trim(); })
          .filter(function (x) { return x; });
      } else if (data.json !== undefined) {
        try { v = JSON.parse(String(value)); } catch (e) { throw new Error(key + ": not valid JSON"); }
      } else v = value;
      put(body, key, v);
    });
    return body;
  }

  // A name with dots is a path into nested objects: "kinds.ink.low_percent" (a rule form's cell).
  function put(body, key, value) {
    var path = key.split(".");
    var at = body;
    for (var i = 0; i < path.length - 1; i++) {
      if (typeof at[path[i]] !== "object" || at[path[i]] === null) at[path[i]] = {};
      at = at[path[i]];
    }
    at[path[path.length - 1]] = value;
  }

  document.querySelectorAll("form[data-api]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var parts = form.dataset.api.split(" ");
      var body;
      try { body = formBody(form); } catch (err) { showError("settings-error", err); return; }
      // data-idempotent: one key per form shown, so a double click or a retry is one order.
      var extra;
      if (form.dataset.idempotent !== undefined) {
        if (!form.dataset.key) {
          form.dataset.key = (window.crypto && window.crypto.randomUUID) ? window.crypto.randomUUID()
            : String(Date.now()) + "-" + String(Math.random()).slice(2);
        }
        extra = { "Idempotency-Key": form.dataset.key };
      }
      api(parts[0], parts[1], body, extra).then(function (data) {
        if (form.dataset.showToken !== undefined && data && data.token) {
          // data-show-token="X": the token goes into #X-value (and the command to run, if the
          // answer has one, into #X-command); shown once, never stored by the page.
          var shown = form.dataset.showToken || "new-token";
          document.getElementById(shown + "-value").textContent = data.token;
          var command = document.getElementById(shown + "-command");
          if (command) command.textContent = data.command || "";
          var site = document.getElementById(shown + "-site");
          if (site) site.textContent = data.site_id || "";
          document.getElementById(shown).hidden = false;
          form.reset();
        } else {
          window.location.reload();
        }
      }).catch(function (err) { showError("settings-error", err); });
    });
  });

  document.querySelectorAll("button[data-api]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      var parts = button.dataset.api.split(" ");
      var body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
      api(parts[0], parts[1], body).then(function () { window.location.reload(); })
        .catch(function (err) { showError("settings-error", err); });
    });
  });

  // A button that shows or hides a part of the page (an order form, an edit row).
  document.querySelectorAll("button[data-toggle]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.dataset.toggle);
      if (!target) return;
      target.hidden = !target.hidden;
      button.setAttribute("aria-expanded", String(!target.hidden));
      var first = target.hidden ? null : target.querySelector("input:not([type=hidden])");
      if (first) first.focus();
    });
  });

  // --- discovery job: progress every second while running, pick printers to monitor --------------
  var job = document.getElementById("job");
  if (!job) return;
  var jobUrl = job.dataset.jobUrl;
  var monitorButton = document.getElementById("monitor-selected");
  var tbody = document.querySelector("#found tbody");

  function cell(row, html) { var td = row.insertCell(); if (html) td.appendChild(html); return td; }
  function text(value) { return document.createTextNode(value == null ? "" : String(value)); }
  function pill(label, cls) {
    var s = document.createElement("span");
    s.className = "pill" + (cls ? " " + cls : "");
    s.textContent = label;
    return s;
  }

  function renderFound(found) {
    var picked = {};
    tbody.querySelectorAll(".found-pick:checked").forEach(function (c) { picked[c.value] = true; });
    tbody.textContent = "";
    found.forEach(function (f) {
      var row = tbody.insertRow();
      row.dataset.address = f.address;
      var box = document.createElement("input");
      box.type = "checkbox";
      box.className = "found-pick";
      box.value = f.printer_id || "";
      box.setAttribute("aria-label", "Select " + f.address);
      box.disabled = !!f.monitored || !f.printer_id || !monitorButton;
      box.checked = !box.disabled && !!picked[box.value];
      cell(row, box);
      var name = document.createElement(f.printer_id ? "a" : "span");
      if (f.printer_id) name.href = "/printers/" + f.printer_id;
      name.textContent = f.name || f.model || f.address;
      var sub = document.createElement("div");
      sub.className = "meta";
      sub.textContent = (f.vendor || "") + " " + (f.model || "");
      var td = cell(row, name);
      td.appendChild(sub);
      cell(row, text(f.address));
      cell(row, text(f.serial || "—"));
      var m = cell(row, f.monitored ? pill("Monitored", "ok") : pill(f.printer_id ? "Not monitored" : "Storing…"));
      m.className = "monitoring";
    });
    document.getElementById("found").hidden = found.length === 0;
    document.getElementById("found-empty").hidden = found.length > 0;
    updateButton();
  }

  function updateButton() {
    if (!monitorButton) return;
    var n = tbody.querySelectorAll(".found-pick:checked").length;
    monitorButton.disabled = n === 0;
    monitorButton.textContent = n ? "Monitor selected (" + n + ")" : "Monitor selected";
  }

  function secondsText(s) { return s < 90 ? Math.round(s) + " s" : Math.round(s / 60) + " min"; }
  function bytesText(n) {
    var units = ["B", "kB", "MB", "GB"], i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
  }

  function render(j) {
    var bar = document.getElementById("job-bar");
    bar.style.width = j.percent + "%";
    bar.classList.toggle("running", j.running);
    bar.parentElement.setAttribute("aria-valuenow", String(j.percent));
    var state = document.getElementById("job-state");
    state.textContent = j.state.replace("_", " ");
    state.className = "pill " + (j.running ? "info" : (j.state === "completed" ? "ok" : "attention"));
    document.getElementById("job-counts").textContent = j.probed + " of " + (j.total || "?") +
      " addresses probed · " + j.live + " answered · " + j.printers_found +
      (j.printers_found === 1 ? " printer" : " printers");
    document.getElementById("job-time").textContent = j.running
      ? (j.remaining_s != null ? "about " + secondsText(j.remaining_s) + " left" : "starting…")
      : "took " + j.elapsed_s.toFixed(1) + " s · " + bytesText(j.bytes_sent + j.bytes_received) + " on the wire";
    var cancel = document.getElementById("job-cancel");
    if (cancel) cancel.hidden = !j.running;
    job.dataset.running = j.running ? "true" : "false";
    if (!j.running && j.found.length === 0) {
      document.getElementById("found-empty").textContent = "No printers answered.";
    }
    renderFound(j.found);
  }

  var pending = 0;
  var timer = null;
  function schedule(ms) { clearTimeout(timer); timer = setTimeout(poll, ms); }
  function poll() {
    api("GET", jobUrl).then(function (j) {
      render(j);
      // Keep polling a little after the end: found printers are stored just after they are announced.
      var storing = j.found.some(function (f) { return !f.printer_id; });
      if (j.running || storing || pending > 0) schedule(1000);
      pending = Math.max(0, pending - 1);
    }).catch(function () { schedule(3000); });
  }
  schedule(0);

  tbody.addEventListener("change", updateButton);
  var all = document.getElementById("found-all");
  if (all) all.addEventListener("change", function () {
    tbody.querySelectorAll(".found-pick:not(:disabled)").forEach(function (c) { c.checked = all.checked; });
    updateButton();
  });

  if (monitorButton) monitorButton.addEventListener("click", function () {
    var ids = [];
    tbody.querySelectorAll(".found-pick:checked").forEach(function (c) { if (c.value) ids.push(c.value); });
    monitorButton.disabled = true;
    Promise.all(ids.map(function (id) {
      return api("PATCH", "/api/v1/printers/" + encodeURIComponent(id), { monitored: true });
    })).then(function () {
      if (all) all.checked = false;
      tbody.querySelectorAll(".found-pick:checked").forEach(function (c) { c.checked = false; });
      pending = 1;
      schedule(0);
    }).catch(function (err) { showError("found-error", err); updateButton(); });
  });

  var cancelButton = document.getElementById("job-cancel");
  if (cancelButton) cancelButton.addEventListener("click", function () {
    cancelButton.disabled = true;
    api("POST", jobUrl + "/cancel").then(function () { pending = 3; schedule(0); })
      .catch(function (err) { showError("found-error", err); cancelButton.disabled = false; });
  });
})();

// The header's tenant switcher (providers): every tenant to choose from; choosing one switches.
(function () {
  "use strict";
  var form = document.getElementById("tenant-switch");
  if (!form) return;
  var select = form.querySelector("select[name=tenant]");
  var current = select.dataset.current;
  fetch("/api/v1/tenants?sort=name&limit=500", { credentials: "same-origin" })
    .then(function (resp) { return resp.ok ? resp.json() : { items: [] }; })
    .then(function (page) {
      if (!page.items.length) return;
      select.textContent = "";
      page.items.forEach(function (t) {
        var opt = document.createElement("option");
        opt.value = t.id;
        opt.textContent = t.name + (t.provider ? " (yours)" : "") + (t.disabled ? " (disabled)" : "");
        opt.selected = t.id === current;
        select.appendChild(opt);
      });
    })
    .catch(function () { /* the select keeps the current tenant; the Tenants page still switches */ });
  select.addEventListener("change", function () { form.submit(); });
})();

// The Alerts page: select several open alerts, acknowledge them at once (POST /alerts/acknowledge).
(function () {
  "use strict";
  var button = document.getElementById("ack-selected");
  if (!button) return;
  var meta = document.querySelector('meta[name="csrf-token"]');
  function picked() { return Array.prototype.slice.call(document.querySelectorAll(".ack-pick:checked")); }
  function update() {
    var n = picked().length;
    button.disabled = n === 0;
    button.textContent = n ? "Acknowledge selected (" + n + ")" : "Acknowledge selected";
  }
  document.addEventListener("change", function (ev) {
    if (ev.target.id === "ack-all") {
      document.querySelectorAll(".ack-pick").forEach(function (c) { c.checked = ev.target.checked; });
    }
    update();
  });
  button.addEventListener("click", function () {
    var ids = picked().map(function (c) { return Number(c.value); });
    button.disabled = true;
    fetch("/api/v1/alerts/acknowledge", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": meta ? meta.content : "" },
      body: JSON.stringify({ ids: ids })
    }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      window.location.reload();
    }).catch(function (err) {
      var e = document.getElementById("ack-error");
      e.textContent = "Could not acknowledge: " + err.message; e.hidden = false; update();
    });
  });
})();

// The Alerts page updates itself, as the fleet page does: when an alert is raised, resolved or
// reworded ("printer" frames with alerts: true, sent once the api has stored it), this page's
// list is fetched again and swapped in, keeping the alerts the user has selected.
(function () {
  "use strict";
  var list = document.getElementById("alerts-list");
  if (!list) return;
  var timer = null;
  var updates = 0;
  function refresh() {
    timer = null;
    var picked = {};
    list.querySelectorAll(".ack-pick:checked").forEach(function (c) { picked[c.value] = true; });
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("alerts-list");
        if (!fresh) return;
        list.innerHTML = fresh.innerHTML;
        list.querySelectorAll(".ack-pick").forEach(function (c) { c.checked = !!picked[c.value]; });
        // The "Acknowledge selected" button counts again.
        list.dispatchEvent(new Event("change", { bubbles: true }));
        updates += 1;
        document.body.dataset.alertUpdates = String(updates);
      })
      .catch(function () { /* the next change tries again */ });
  }
  document.addEventListener("tw:printer", function (ev) {
    if (!ev.detail || !ev.detail.alerts) return;
    if (!timer) timer = setTimeout(refresh, 500);  // a burst of alerts: one fetch
  });
})();
