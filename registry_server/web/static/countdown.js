// Ticks down every <span class="countdown" data-until="ISO time">: the soak time and the
// approvals about to expire. The server's text stays the truth; reload to see the state.
(function () {
  "use strict";
  function text(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    var parts = [[Math.floor(s / 86400), "d"], [Math.floor(s % 86400 / 3600), "h"],
                 [Math.floor(s % 3600 / 60), "m"], [s % 60, "s"]];
    while (parts.length > 1 && parts[0][0] === 0) { parts.shift(); }
    return parts.map(function (p) { return p[0] + p[1]; }).join(" ");
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-until]").forEach(function (el) {
      el.textContent = text(Date.parse(el.getAttribute("data-until")) - now);
    });
  }
  if (document.querySelector(".countdown[data-until]")) { tick(); setInterval(tick, 1000); }
})();
