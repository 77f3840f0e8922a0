// The printer page's "Poll now": ask the poller (POST .../poll), then reload once the new reading
// is in (last_seen_at moves), so the page shows what the poll found. Without script the button
// still works as a plain form post.
(function () {
  "use strict";
  var button = document.getElementById("poll-now");
  if (!button) return;
  var state = document.getElementById("poll-state");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.content : "";
  var printerUrl = "/api/v1/printers/" + encodeURIComponent(button.dataset.poll);
  var before = button.dataset.lastSeen || "";
  var WAIT_MS = 60000, EVERY_MS = 1500;

  function say(text) { state.textContent = text; }

  function watch(started) {
    if (Date.now() - started > WAIT_MS) {
      say("No new reading within a minute; the printer may not answer.");
      button.disabled = false;
      return;
    }
    fetch(printerUrl, { credentials: "same-origin" })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (p) {
        if (p && p.last_seen_at && p.last_seen_at !== before &&
            (!before || Date.parse(p.last_seen_at) > Date.parse(before))) {
          say("New reading in.");
          window.location.reload();
          return;
        }
        if (p && p.last_error && p.reachable === false) say("Polling… last error: " + p.last_error);
        setTimeout(function () { watch(started); }, EVERY_MS);
      })
      .catch(function () { setTimeout(function () { watch(started); }, EVERY_MS); });
  }

  button.addEventListener("click", function (ev) {
    ev.preventDefault();
    button.disabled = true;
    say("Poll requested…");
    fetch(printerUrl + "/poll", {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf }
    }).then(function (resp) {
      return resp.json().then(function (data) {
        if (!resp.ok) throw new Error(data.error || ("HTTP " + resp.status));
        return data;
      });
    }).then(function () {
      say("Poll requested; waiting for the reading…");
      watch(Date.now());
    }).catch(function (err) {
      say(err.message);
      button.disabled = false;
    });
  });
})();
