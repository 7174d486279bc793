// Build steps: app.js streams the build log into #build-log; this follows
// its lines ("#N name", then "#N DONE 1.2s", "#N CACHED" or "#N ERROR: …")
// and keeps the list of steps (#build-steps) and its count current. The
// server renders the list as it was when the page loaded.
(function () {
  "use strict";
  var log = document.getElementById("build-log");
  var list = document.getElementById("build-steps");
  var count = document.getElementById("build-steps-count");
  if (!log || !list) return;
  var steps = {};
  list.querySelectorAll("li[data-step]").forEach(function (li) { steps[li.getAttribute("data-step")] = li; });
  function set(li, state, took) {
    li.className = "bstep bstep-" + state;
    li.querySelector(".bstep-took").textContent = took;
  }
  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    if (text) s.textContent = text;
    return s;
  }
  function line(text) {
    var m = /^#(\d+) (.*)$/.exec(text);
    if (!m) return;
    var li = steps[m[1]];
    if (!li) {
      li = document.createElement("li");
      li.setAttribute("data-step", m[1]);
      var icon = span("bstep-icon");
      icon.setAttribute("aria-hidden", "true");
      li.appendChild(icon);
      li.appendChild(span("bstep-name", m[2]));
      li.appendChild(span("bstep-took"));
      set(li, "running", "");
      list.appendChild(li);
      steps[m[1]] = li;
      return;
    }
    var rest = m[2];
    if (/^DONE\b/.test(rest)) set(li, "done", rest.slice(4).trim());
    else if (/^CACHED\b/.test(rest)) set(li, "cached", "cached");
    else if (/^(ERROR|CANCELED)\b/.test(rest)) set(li, "failed", "failed");
  }
  new MutationObserver(function (records) {
    records.forEach(function (r) {
      r.addedNodes.forEach(function (n) {
        if (n.nodeType !== 1 || !n.classList.contains("ln") || n.classList.contains("ev")) return;
        var tx = n.querySelector(".tx");
        if (tx) line(tx.textContent);
      });
    });
    if (count) {
      count.textContent = list.querySelectorAll(".bstep-done, .bstep-cached").length + " of " + list.children.length + " done";
    }
  }).observe(log, { childList: true });
})();
