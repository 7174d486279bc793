// Slipway dashboard: a little JavaScript on top of server-rendered pages.
// - live regions: elements with data-live and an id are swapped for their
//   fresh version when /live says the page's state changed;
// - build log and runtime logs: streamed with EventSource, auto-scrolling
//   while the reader is at the bottom;
// - relative times, running durations, confirmations, auto-submitting filters,
//   copy buttons and masked secrets.
// Every page works without it.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // ---- time formatting --------------------------------------------------
  function plural(n, unit) { return n === 1 ? "1 " + unit : n + " " + unit + "s"; }
  function age(t) {
    var d = (Date.now() - t.getTime()) / 1000;
    if (d < 45) return "just now";
    if (d < 90 * 60) return plural(Math.round(d / 60), "minute") + " ago";
    if (d < 36 * 3600) return plural(Math.round(d / 3600), "hour") + " ago";
    if (d < 60 * 86400) return plural(Math.round(d / 86400), "day") + " ago";
    return t.toLocaleDateString();
  }
  function duration(ms) {
    if (ms < 0) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    var s = ms / 1000;
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 60) return Math.floor(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (Math.floor(s) % 60) + " s";
    return Math.floor(s / 3600) + " h " + (Math.floor(s / 60) % 60) + " min";
  }
  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = "0" + n; return n; }
  function clock(t) {
    return pad(t.getHours()) + ":" + pad(t.getMinutes()) + ":" + pad(t.getSeconds()) + "." + pad(t.getMilliseconds(), 3);
  }
  function tick() {
    document.querySelectorAll("time[data-rel]").forEach(function (el) {
      var t = new Date(el.getAttribute("datetime"));
      if (!isNaN(t)) el.textContent = age(t);
    });
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var t = new Date(el.getAttribute("data-since"));
      if (!isNaN(t)) el.textContent = duration(Date.now() - t.getTime());
    });
  }
  setInterval(tick, 1000);

  // ---- forms ---------------------------------------------------------------
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
  document.addEventListener("change", function (e) {
    var form = e.target.form;
    if (form && form.hasAttribute("data-autosubmit")) form.submit();
  });

  function announce(text) {
    var el = document.getElementById("live-status");
    if (el) el.textContent = text;
  }

  // ---- flash next to the form ------------------------------------------------
  // A form's redirect lands on its section (#vars, #git…); its message moves
  // there from the top of the page, where it would be out of sight.
  (function () {
    var flash = document.querySelector("main > .flash");
    var target = location.hash.length > 1 && document.getElementById(location.hash.slice(1));
    if (!flash || !target || !target.classList.contains("card")) return;
    var head = target.querySelector("h2");
    target.insertBefore(flash, head ? head.nextSibling : target.firstChild);
    flash.classList.add("flash-in-section");
  })();

  // ---- copy and reveal -------------------------------------------------------
  // [data-copy=ID] copies the text of #ID; [data-secret] elements are masked
  // until their [data-reveal=ID] button is pressed. Without JavaScript the
  // buttons stay hidden and the text shows as it is.
  var secrets = {};
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var ta = document.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.className = "visually-hidden";
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      ta.remove();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }
  function mask(el, shown) {
    el.textContent = shown ? secrets[el.id] : secrets[el.id].replace(/./g, "•");
    el.classList.toggle("concealed", !shown);
  }
  document.querySelectorAll("[data-secret][id]").forEach(function (el) {
    secrets[el.id] = el.textContent;
    mask(el, false);
  });
  document.querySelectorAll("[data-reveal], [data-copy]").forEach(function (btn) { btn.hidden = false; });
  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("[data-reveal], [data-copy]");
    if (!btn) return;
    if (btn.hasAttribute("data-reveal")) {
      var el = document.getElementById(btn.getAttribute("data-reveal"));
      if (!el || !(el.id in secrets)) return;
      var shown = btn.getAttribute("aria-pressed") !== "true";
      mask(el, shown);
      btn.setAttribute("aria-pressed", String(shown));
      btn.textContent = shown ? "Hide" : "Reveal";
      return;
    }
    var target = document.getElementById(btn.getAttribute("data-copy"));
    if (!target) return;
    var text = target.id in secrets ? secrets[target.id] : target.textContent.trim();
    copyText(text).then(function () {
      btn.textContent = "Copied";
      announce("Copied to the clipboard");
    }, function () {
      btn.textContent = "Copy failed";
      announce("Could not copy; select the text instead");
    });
    clearTimeout(btn._reset);
    btn._reset = setTimeout(function () { btn.textContent = "Copy"; }, 2000);
  });

  // ---- streams that pause while the tab is hidden ---------------------------
  // Browsers allow few connections per host; a hidden tab gives its streams
  // back and resumes them (from where they were) when shown again.
  var streams = [];
  function managed(open) {
    var s = { es: null, wanted: true, open: function () { if (!s.es && s.wanted) s.es = open(); },
      close: function () { if (s.es) { s.es.close(); s.es = null; } },
      stop: function () { s.wanted = false; s.close(); } };
    streams.push(s);
    if (!document.hidden) s.open();
    return s;
  }
  document.addEventListener("visibilitychange", function () {
    streams.forEach(function (s) { if (document.hidden) s.close(); else s.open(); });
  });

  // ---- live regions ----------------------------------------------------------
  var body = document.body;
  var scope = body.getAttribute("data-live-scope");
  if (scope) {
    var refreshing = false, again = false;
    var refresh = function () {
      if (refreshing) { again = true; return; }
      refreshing = true;
      fetch(location.href, { headers: { "X-Live": "1" }, credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var changed = false;
          doc.querySelectorAll("[data-live][id]").forEach(function (fresh) {
            var cur = document.getElementById(fresh.id);
            if (!cur || cur.getAttribute("data-v") === fresh.getAttribute("data-v")) return;
            var focused = document.activeElement && cur.contains(document.activeElement) ? document.activeElement : null;
            var node = document.importNode(fresh, true);
            cur.replaceWith(node);
            changed = true;
            if (focused && focused.id) {
              var back = document.getElementById(focused.id);
              if (back) back.focus();
            }
          });
          var fp = doc.body.getAttribute("data-fp");
          if (fp) body.setAttribute("data-fp", fp);
          if (changed) { tick(); announce("Updated"); }
        })
        .catch(function () {})
        .then(function () {
          refreshing = false;
          if (again) { again = false; refresh(); }
        });
    };
    managed(function () {
      var es = new EventSource("/live?scope=" + encodeURIComponent(scope) + "&fp=" + encodeURIComponent(body.getAttribute("data-fp") || ""));
      es.addEventListener("change", refresh);
      es.addEventListener("gone", function () { es.close(); });
      return es;
    });
  }

  // ---- logs --------------------------------------------------------------------
  // A log view keeps the reader at the bottom while they are there; once
  // they scroll up, it stops following and offers a button to jump back.
  function LogView(el) {
    this.el = el;
    this.seen = {};   // build steps (#N) whose header was shown
    this.queue = [];
    this.timer = null;
    this.filter = "";
    this.count = 0;
    this.jump = document.querySelector('[data-jump="' + el.id + '"]');
    var self = this;
    el.addEventListener("scroll", function () { if (self.atBottom()) self.showJump(false); });
    if (this.jump) this.jump.addEventListener("click", function () { self.toBottom(); self.el.focus(); });
  }
  LogView.prototype.atBottom = function () {
    var el = this.el;
    return el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
  };
  LogView.prototype.toBottom = function () { this.el.scrollTop = this.el.scrollHeight; this.showJump(false); };
  LogView.prototype.showJump = function (on) { if (this.jump) this.jump.hidden = !on; };
  LogView.prototype.render = function (l) {
    var row = document.createElement("div");
    row.className = "ln";
    row.setAttribute("data-id", l.id);
    var t = new Date(l.time);
    var ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = clock(t);
    ts.title = t.toISOString();
    row.appendChild(ts);
    var text = document.createElement("span");
    text.className = "tx";
    var m = /^#(\d+) (.*)$/.exec(l.text);
    if (l.stream === "slipway") {
      row.classList.add("ev");
      text.textContent = l.text;
    } else if (m && this.kind === "build") {
      var step = document.createElement("span");
      step.className = "step";
      step.textContent = "#" + m[1];
      text.appendChild(step);
      text.appendChild(document.createTextNode(" " + m[2]));
      if (!this.seen[m[1]]) {
        this.seen[m[1]] = true;
        row.classList.add("stage");
        row.setAttribute("role", "heading");
        row.setAttribute("aria-level", "3");
      } else if (/^DONE\b/.test(m[2])) row.classList.add("ok");
      else if (/^(ERROR|CANCELED)\b/.test(m[2])) row.classList.add("err");
      else if (/^CACHED\b/.test(m[2])) row.classList.add("cached");
      else if (/^WARN\b/.test(m[2])) row.classList.add("warn");
    } else {
      if (l.stream === "stderr") row.classList.add("stderr");
      text.textContent = l.text;
    }
    row.appendChild(text);
    row.hidden = !this.matches(row);
    return row;
  };
  LogView.prototype.matches = function (row) {
    return !this.filter || row.textContent.toLowerCase().indexOf(this.filter) >= 0;
  };
  LogView.prototype.clearEmpty = function () {
    var e = this.el.querySelector(".log-empty");
    if (e) e.remove();
  };
  LogView.prototype.empty = function (msg) {
    if (this.count === 0 && !this.el.querySelector(".log-empty")) {
      var p = document.createElement("div");
      p.className = "log-empty";
      p.textContent = msg;
      this.el.appendChild(p);
    }
  };
  // append queues lines and adds them in batches, so a long log arrives in
  // a few layout passes rather than one per line.
  LogView.prototype.append = function (l) {
    this.queue.push(l);
    if (this.timer) return;
    var self = this;
    this.timer = setTimeout(function () { self.flush(); }, 16);
  };
  LogView.prototype.flush = function () {
    this.timer = null;
    if (!this.queue.length) return;
    var stick = this.atBottom();
    var frag = document.createDocumentFragment();
    for (var i = 0; i < this.queue.length; i++) frag.appendChild(this.render(this.queue[i]));
    this.count += this.queue.length;
    this.queue = [];
    this.clearEmpty();
    this.el.appendChild(frag);
    // A followed log is bounded: the oldest lines leave the page and can be
    // loaded again.
    if (this.max && this.count > this.max) {
      var drop = this.count - this.max + Math.floor(this.max / 10);
      var rows = this.el.querySelectorAll(".ln");
      for (var j = 0; j < drop && j < rows.length; j++) rows[j].remove();
      this.count -= Math.min(drop, rows.length);
      var first = this.el.querySelector(".ln");
      if (first && this.ontrim) this.ontrim(Number(first.getAttribute("data-id")));
    }
    if (stick) this.toBottom(); else this.showJump(true);
    if (this.onchange) this.onchange();
  };
  // prepend adds older lines (oldest first) above, keeping the view still.
  LogView.prototype.prepend = function (lines) {
    if (!lines.length) return;
    var el = this.el, before = el.scrollHeight;
    var frag = document.createDocumentFragment();
    for (var i = 0; i < lines.length; i++) frag.appendChild(this.render(lines[i]));
    this.count += lines.length;
    this.clearEmpty();
    el.insertBefore(frag, el.firstChild);
    el.scrollTop += el.scrollHeight - before;
    if (this.onchange) this.onchange();
  };
  LogView.prototype.setFilter = function (f) {
    this.filter = f.toLowerCase();
    var self = this;
    this.el.querySelectorAll(".ln").forEach(function (row) { row.hidden = !self.matches(row); });
  };

  function state(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  // Build log: everything from the first line, then live until the
  // deployment is running or over.
  var buildEl = document.getElementById("build-log");
  if (buildEl) {
    var build = new LogView(buildEl);
    build.kind = "build";
    var lastBuild = 0;
    state("build-log-state", "loading…");
    var bs = managed(function () {
      var es = new EventSource(buildEl.getAttribute("data-stream") + "?after=" + lastBuild);
      es.addEventListener("line", function (e) {
        var l = JSON.parse(e.data);
        if (l.id <= lastBuild) return;
        lastBuild = l.id;
        build.append(l);
      });
      es.addEventListener("status", function (e) {
        var s = JSON.parse(e.data).status.toLowerCase();
        state("build-log-state", "streaming live · " + s);
      });
      es.addEventListener("end", function (e) {
        var s = JSON.parse(e.data).status.toLowerCase();
        bs.stop();
        build.flush();
        build.empty("No build output.");
        state("build-log-state", "finished · " + s);
        announce("Deployment " + s);
      });
      return es;
    });
  }

  // Runtime logs: the newest page first, older pages on request, new lines
  // while following.
  var rtEl = document.getElementById("runtime-log");
  if (rtEl) {
    var rt = new LogView(rtEl);
    rt.kind = "runtime";
    rt.max = 5000;
    var newest = 0, older = 0;
    var olderBtn = document.getElementById("runtime-older");
    var follow = document.getElementById("runtime-follow");
    var filter = document.getElementById("runtime-filter");
    var summary = function () {
      var shown = rtEl.querySelectorAll(".ln:not([hidden])").length;
      state("runtime-log-state", rt.filter ? shown + " of " + rt.count + " loaded lines match" : rt.count + " lines loaded");
    };
    rt.onchange = summary;
    rt.ontrim = function (oldestID) { older = oldestID; olderBtn.hidden = false; };
    var page = function (before) {
      var url = rtEl.getAttribute("data-page") + "?limit=200" + (before ? "&before=" + before : "");
      return fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error("loading logs: " + r.status);
        return r.json();
      });
    };
    var rs = null;
    var startFollow = function () {
      rs = managed(function () {
        var es = new EventSource(rtEl.getAttribute("data-stream") + "?after=" + newest);
        es.addEventListener("line", function (e) {
          var l = JSON.parse(e.data);
          if (l.id <= newest) return;
          newest = l.id;
          rt.append(l);
        });
        return es;
      });
    };
    page(0).then(function (p) {
      var lines = (p.lines || []).slice().reverse();
      if (lines.length) newest = lines[lines.length - 1].id;
      lines.forEach(function (l) { rt.append(l); });
      rt.flush();
      older = p.next || 0;
      olderBtn.hidden = !older;
      rt.empty("No output yet.");
      summary();
      if (follow.checked) startFollow();
    }).catch(function (err) { state("runtime-log-state", String(err)); });
    olderBtn.addEventListener("click", function () {
      olderBtn.disabled = true;
      page(older).then(function (p) {
        rt.prepend((p.lines || []).slice().reverse());
        older = p.next || 0;
        olderBtn.hidden = !older;
      }).catch(function (err) { state("runtime-log-state", String(err)); })
        .then(function () { olderBtn.disabled = false; });
    });
    follow.addEventListener("change", function () {
      if (follow.checked) { if (!rs || !rs.wanted) startFollow(); rt.toBottom(); }
      else if (rs) rs.stop();
    });
    filter.addEventListener("input", function () { rt.setFilter(filter.value); summary(); });
  }
})();
