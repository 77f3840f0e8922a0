// Toasts for alerts as they happen (server-sent events); nothing else on the page needs JS.
(function () {
  "use strict";
  var url = document.body.dataset.stream;
  if (!url || !window.EventSource) return;
  var box = document.getElementById("toasts");

  function toast(data) {
    var el = document.createElement("div");
    el.className = "toast " + (data.severity || "info");
    var link = document.createElement("a");
    link.href = data.url || "/alerts";
    link.textContent = data.title || "Printer";
    var msg = document.createElement("p");
    msg.textContent = (data.kind === "resolved" ? "Resolved: " : "") + (data.message || "");
    el.appendChild(link);
    el.appendChild(msg);
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, data.severity === "critical" ? 20000 : 10000);
    while (box.children.length > 5) box.firstChild.remove();
  }

  var source = new EventSource(url, { withCredentials: true });
  source.addEventListener("alert", function (ev) {
    try { toast(JSON.parse(ev.data)); } catch (e) { /* a malformed frame is skipped */ }
  });
})();
