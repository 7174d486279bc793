// Metrics plots: the server renders them (SVG in #metrics); this switches
// the range in place and reloads the section now and then so the plots
// stay current. Without it, the range links reload the page.
(function () {
  "use strict";
  var timer = null;
  function section() { return document.getElementById("metrics"); }
  function schedule() {
    clearTimeout(timer);
    var sec = section();
    if (!sec) return;
    var every = Number(sec.getAttribute("data-refresh")) || 10;
    timer = setTimeout(function () {
      if (document.hidden) { schedule(); return; }
      load(section().getAttribute("data-range"), false);
    }, every * 1000);
  }
  function load(range, remember) {
    var sec = section();
    if (!sec) return;
    sec.classList.add("loading");
    fetch(sec.getAttribute("data-metrics") + "?range=" + encodeURIComponent(range), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("metrics");
        var cur = section();
        if (!fresh || !cur) return;
        var focused = document.activeElement && cur.contains(document.activeElement) ? document.activeElement.getAttribute("data-range") : null;
        cur.replaceWith(document.importNode(fresh, true));
        if (focused) {
          var back = document.querySelector('#metrics .range-tabs a[data-range="' + focused + '"]');
          if (back) back.focus();
        }
        if (remember) {
          var u = new URL(location.href);
          u.searchParams.set("range", range);
          history.replaceState(history.state, "", u.pathname + u.search + "#metrics");
        }
      })
      .catch(function () {})
      .then(function () {
        var s = section();
        if (s) s.classList.remove("loading");
        schedule();
      });
  }
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("#metrics .range-tabs a[data-range]");
    if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    load(a.getAttribute("data-range"), true);
  });
  schedule();
})();
