// Progressive enhancement only: every page works without this script.
// 1. The overview refreshes its body every few seconds (without it: a meta refresh in <noscript>).
// 2. Destructive forms ask for confirmation.
(function () {
  "use strict";
  var box = document.querySelector("[data-refresh]");
  if (box) {
    var every = (parseInt(box.getAttribute("data-every"), 10) || 5) * 1000;
    var refresh = function () {
      fetch(box.getAttribute("data-refresh"), { credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.text(); })
        .then(function (html) { box.innerHTML = html; box.setAttribute("data-refreshed", Date.now()); })
        .catch(function () { /* keep the last view; the next tick tries again */ })
        .finally(function () { setTimeout(refresh, every); });
    };
    setTimeout(refresh, every);
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
})();
