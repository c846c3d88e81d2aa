/* amly report: the map, legend, summary and gap chart of one report page.
   Written for this page, no dependencies. Everything is drawn on canvases (50,000 photos are
   50,000 canvas shapes at most, never DOM nodes); OpenStreetMap tiles are an optional
   background drawn only when the viewer is online, nothing waits for them. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("amly-data").textContent);
  var N = D.lon.length, S = D.seqs.length;
  var STATUS = ["kept", "duplicate", "GPS error", "failed"];
  var R = (window.amlyReport = { draws: 0, firstDrawMs: null, ready: false, seqs: D.seqs });

  // -- decode: delta-coded integers -> degrees, milliseconds, web-mercator [0, 1) ---------
  var lon = new Float64Array(N), lat = new Float64Array(N), mx = new Float64Array(N),
    my = new Float64Array(N), tm = new Float64Array(N), sx = new Float32Array(N),
    sy = new Float32Array(N), seen = new Uint8Array(N), seqOf = new Int32Array(N).fill(-1);
  (function () {
    var a = 0, b = 0, t = 0, i, k, r;
    for (i = 0; i < N; i++) {
      a += D.lon[i]; b += D.lat[i]; t += D.t[i];
      lon[i] = a / 1e6; lat[i] = b / 1e6; tm[i] = D.t0 * 1000 + t;
      mx[i] = (lon[i] + 180) / 360;
      r = Math.max(-85.05, Math.min(85.05, lat[i])) * Math.PI / 180;
      my[i] = (1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2;
    }
    for (i = 0; i < D.nt.length; i++) tm[D.nt[i]] = NaN;
    for (k = 0; k < S; k++) for (i = D.seqs[k].o; i < D.seqs[k].o + D.seqs[k].n; i++) seqOf[i] = k;
  })();

  // -- formatting ---------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function km(m) { return m == null ? "" : m < 1000 ? Math.round(m) + " m" : (m / 1000).toFixed(m < 1e4 ? 2 : 1) + " km"; }
  function dur(s) {
    if (s == null) return "";
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    if (s < 86400 * 2) return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
    return Math.round(s / 86400) + " days";
  }
  function when(ms) { return isNaN(ms) ? "unknown" : new Date(ms).toISOString().replace(".000Z", "Z"); }
  function short(id) { id = String(id); return id.length > 14 ? id.slice(0, 8) + "\u2026" + id.slice(-4) : id; }
  function file(i) { var d = D.dirs[D.fd[i]]; return (d ? d + "/" : "") + D.fn[i]; }

  // -- view -----------------------------------------------------------------------------------
  var canvas = $("map"), ctx = canvas.getContext("2d"), W = 0, H = 0, dpr = 1;
  var view = { cx: 0.5, cy: 0.5, z: 1 }, selected = -1, hover = -1, pending = false;
  var basemap = $("basemap"), coverage = $("coverage");
  function scale() { return 256 * Math.pow(2, view.z); }
  function resize() {
    var r = canvas.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1; W = r.width; H = r.height;
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  }
  function fit(from, to) {
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, i;
    for (i = from; i < to; i++) {
      if (mx[i] < x0) x0 = mx[i]; if (mx[i] > x1) x1 = mx[i];
      if (my[i] < y0) y0 = my[i]; if (my[i] > y1) y1 = my[i];
    }
    if (!(x1 >= x0)) { view = { cx: 0.5, cy: 0.5, z: 1 }; return; }
    var dx = Math.max(x1 - x0, 1e-9), dy = Math.max(y1 - y0, 1e-9);
    var z = Math.log2(Math.min((W - 60) / (dx * 256), (H - 60) / (dy * 256)));
    view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, z: Math.max(1, Math.min(19, z)) };
  }
  function redraw() { if (!pending) { pending = true; requestAnimationFrame(function () { pending = false; draw(); }); } }

  // -- basemap: OpenStreetMap raster tiles, only online, never awaited -----------------------
  var tiles = {};
  function drawTiles(s) {
    if (!basemap.checked || !navigator.onLine) return;
    var tz = Math.max(0, Math.min(19, Math.round(view.z))), n = Math.pow(2, tz), ts = s / n;
    var x0 = Math.floor((view.cx - W / 2 / s) * n), x1 = Math.floor((view.cx + W / 2 / s) * n);
    var y0 = Math.max(0, Math.floor((view.cy - H / 2 / s) * n)), y1 = Math.min(n - 1, Math.floor((view.cy + H / 2 / s) * n));
    if ((x1 - x0 + 1) * (y1 - y0 + 1) > 80) return;
    for (var x = x0; x <= x1; x++) for (var y = y0; y <= y1; y++) {
      var xx = ((x % n) + n) % n, key = tz + "/" + xx + "/" + y, t = tiles[key];
      if (!t) {
        t = tiles[key] = { img: new Image(), ok: false };
        t.img.onload = (function (t) { return function () { t.ok = true; redraw(); }; })(t);
        t.img.referrerPolicy = "strict-origin-when-cross-origin";
        t.img.src = "https://tile.openstreetmap.org/" + key + ".png";
      }
      if (t.ok) ctx.drawImage(t.img, (x / n - view.cx) * s + W / 2, (y / n - view.cy) * s + H / 2, ts + 0.5, ts + 0.5);
    }
    ctx.fillStyle = "rgba(255,255,255,0.35)"; ctx.fillRect(0, 0, W, H);
  }
  function drawCoverage(s) {
    if (!coverage.checked || !D.coverage.length) return;
    var top = 1, i, c;
    for (i = 0; i < D.coverage.length; i++) top = Math.max(top, D.coverage[i][3]);
    ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (i = 0; i < D.coverage.length; i++) {
      c = D.coverage[i];
      var n = Math.pow(2, c[2]), x = (c[0] / n - view.cx) * s + W / 2, y = (c[1] / n - view.cy) * s + H / 2, w = s / n;
      ctx.fillStyle = "rgba(255,140,0," + (0.12 + 0.45 * c[3] / top).toFixed(3) + ")";
      ctx.fillRect(x, y, w, w); ctx.strokeStyle = "rgba(160,80,0,0.6)"; ctx.strokeRect(x, y, w, w);
      if (w > 40) { ctx.fillStyle = "#633"; ctx.fillText(c[3], x + w / 2, y + w / 2); }
    }
  }

  // -- drawing ---------------------------------------------------------------------------------
  function arrow(x, y, h) {
    var r = h * Math.PI / 180, dx = Math.sin(r), dy = -Math.cos(r);
    ctx.moveTo(x + 7 * dx, y + 7 * dy);
    ctx.lineTo(x - 4 * dx + 4 * dy, y - 4 * dy - 4 * dx);
    ctx.lineTo(x - 4 * dx - 4 * dy, y - 4 * dy + 4 * dx);
    ctx.closePath();
  }
  function mark(kind, x, y) {
    if (kind === 1) { ctx.moveTo(x + 5, y); ctx.arc(x, y, 5, 0, 2 * Math.PI); }
    else if (kind === 2) { ctx.moveTo(x, y - 7); ctx.lineTo(x + 7, y); ctx.lineTo(x, y + 7); ctx.lineTo(x - 7, y); ctx.closePath(); }
    else { ctx.moveTo(x - 5, y - 5); ctx.lineTo(x + 5, y + 5); ctx.moveTo(x + 5, y - 5); ctx.lineTo(x - 5, y + 5); }
  }
  var MARK = [null, ["#ffffff", "#444444", 1.5], ["#ff00ff", "#ffffff", 1.5], [null, "#000000", 2.5]];
  function draw() {
    var s = scale(), i, k, q, lx, ly, cw = Math.ceil(W / 4) + 1, grid = new Uint8Array(cw * (Math.ceil(H / 4) + 1));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#eef0ea"; ctx.fillRect(0, 0, W, H);
    drawTiles(s); drawCoverage(s);
    for (i = 0; i < N; i++) {
      sx[i] = (mx[i] - view.cx) * s + W / 2; sy[i] = (my[i] - view.cy) * s + H / 2;
      seen[i] = sx[i] > -10 && sy[i] > -10 && sx[i] < W + 10 && sy[i] < H + 10 ? 1 : 0;
    }
    ctx.lineJoin = ctx.lineCap = "round";
    for (k = 0; k < S; k++) {
      // Lines drop vertices closer than 1.5 px to the last one drawn: a simplified geometry
      // at every zoom, computed per frame (cheap, no precomputed levels).
      q = D.seqs[k]; if (!q.n) continue;
      ctx.beginPath(); ctx.strokeStyle = q.color; ctx.lineWidth = 3;
      lx = sx[q.o]; ly = sy[q.o]; ctx.moveTo(lx, ly);
      for (i = q.o + 1; i < q.o + q.n; i++) {
        if (Math.abs(sx[i] - lx) + Math.abs(sy[i] - ly) >= 1.5 || i === q.o + q.n - 1) { lx = sx[i]; ly = sy[i]; ctx.lineTo(lx, ly); }
      }
      if (q.n === 1) ctx.arc(lx, ly, 3, 0, 2 * Math.PI);
      ctx.stroke();
    }
    for (k = 0; k < S; k++) {
      // Photo arrows only where they do not overlap (one per 4 px cell, 9 px apart along the line).
      q = D.seqs[k]; ctx.beginPath(); lx = -1e9; ly = -1e9;
      for (i = q.o; i < q.o + q.n; i++) {
        if (!seen[i] || Math.abs(sx[i] - lx) + Math.abs(sy[i] - ly) < 9) continue;
        var c = ((sy[i] >> 2) * cw + (sx[i] >> 2)) | 0;
        if (c < 0 || c >= grid.length || grid[c]) continue;
        grid[c] = 1; lx = sx[i]; ly = sy[i];
        if (D.hd[i] >= 0) arrow(lx, ly, D.hd[i]); else { ctx.moveTo(lx + 3, ly); ctx.arc(lx, ly, 3, 0, 2 * Math.PI); }
      }
      ctx.fillStyle = q.color; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.stroke();
    }
    var flag = [], cells = {};
    for (i = 0; i < N; i++) if (D.st[i] || seqOf[i] < 0) flag.push(i);
    for (var st = 3; st >= 0; st--) {
      // Flagged photos are drawn on top, all of them (one per 2 px cell).
      ctx.beginPath();
      for (var j = 0; j < flag.length; j++) {
        i = flag[j]; if (D.st[i] !== st || !seen[i]) continue;
        var key = st + ":" + (sx[i] >> 1) + ":" + (sy[i] >> 1);
        if (cells[key]) continue; cells[key] = 1;
        if (st === 0) { ctx.moveTo(sx[i] + 3, sy[i]); ctx.arc(sx[i], sy[i], 3, 0, 2 * Math.PI); } else mark(st, sx[i], sy[i]);
      }
      var m = MARK[st] || ["#888888", "#ffffff", 1];
      if (m[0]) { ctx.fillStyle = m[0]; ctx.fill(); }
      ctx.strokeStyle = m[1]; ctx.lineWidth = m[2]; ctx.stroke();
    }
    if (selected >= 0 && seen[selected]) {
      ctx.beginPath(); ctx.arc(sx[selected], sy[selected], 10, 0, 2 * Math.PI);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.stroke();
    }
    $("attrib").hidden = !(basemap.checked && navigator.onLine);
    R.draws++;
    if (R.firstDrawMs === null) { R.firstDrawMs = performance.now(); R.ready = true; }
  }

  // -- picking ---------------------------------------------------------------------------------
  function pick(x, y) {
    // Nearest photo within 9 px; a flagged photo wins over a kept one nearby.
    var best = -1, bd = 81, i, d;
    for (i = 0; i < N; i++) {
      if (!seen[i]) continue;
      d = (sx[i] - x) * (sx[i] - x) + (sy[i] - y) * (sy[i] - y);
      if (D.st[i]) d = d * 0.25 - 4;
      if (d < bd) { bd = d; best = i; }
    }
    return best;
  }
  function describe(i, full) {
    var k = seqOf[i], why = D.why[i], h = [];
    h.push("<b>" + esc(D.fn[i]) + "</b>");
    if (full) h.push('<div class="note">' + esc(file(i)) + "</div>");
    if (why) h.push('<div class="reason">' + esc(why[1]) + "</div>" +
      (full ? '<div class="note">' + esc(STATUS[D.st[i]] || "flagged") + " \u00b7 " + esc(why[0]) + "</div>" : ""));
    h.push("time " + esc(when(tm[i])));
    h.push("position " + lat[i].toFixed(6) + ", " + lon[i].toFixed(6) + (D.hd[i] >= 0 ? ", heading " + D.hd[i] + "\u00b0" : ""));
    if (k >= 0) h.push("sequence " + esc(short(D.seqs[k].id)));
    if (full && D.thumbs[i]) h.push('<img alt="thumbnail" src="' + D.thumbs[i] + '">');
    return h.join(full ? "<br>" : " \u00b7 ");
  }
  function select(i) {
    selected = i;
    $("infobody").innerHTML = i < 0 ? "Click a photo on the map." : describe(i, true);
    redraw();
  }
  function tip(i, x, y) {
    var t = $("tip");
    if (i < 0) { t.hidden = true; return; }
    t.innerHTML = describe(i, false); t.hidden = false;
    t.style.left = Math.min(x + 14, W - 330) + "px"; t.style.top = (y + 14) + "px";
  }

  // -- interaction -----------------------------------------------------------------------------
  var drag = null;
  canvas.addEventListener("pointerdown", function (e) {
    drag = { x: e.offsetX, y: e.offsetY, cx: view.cx, cy: view.cy, moved: false };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", function (e) {
    if (drag) {
      var dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; canvas.classList.add("drag"); $("tip").hidden = true; }
      if (drag.moved) { view.cx = drag.cx - dx / scale(); view.cy = drag.cy - dy / scale(); redraw(); }
      return;
    }
    var i = pick(e.offsetX, e.offsetY);
    if (i !== hover) { hover = i; tip(i, e.offsetX, e.offsetY); }
  });
  canvas.addEventListener("pointerup", function (e) {
    if (drag && !drag.moved) select(pick(e.offsetX, e.offsetY));
    drag = null; canvas.classList.remove("drag");
  });
  canvas.addEventListener("pointerleave", function () { hover = -1; tip(-1); });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    var f = Math.max(-1, Math.min(1, -e.deltaY / 300)), s0 = scale();
    var wx = view.cx + (e.offsetX - W / 2) / s0, wy = view.cy + (e.offsetY - H / 2) / s0;
    view.z = Math.max(1, Math.min(21, view.z + f));
    var s1 = scale(); view.cx = wx - (e.offsetX - W / 2) / s1; view.cy = wy - (e.offsetY - H / 2) / s1;
    redraw();
  }, { passive: false });
  canvas.addEventListener("dblclick", function (e) {
    var s0 = scale(), wx = view.cx + (e.offsetX - W / 2) / s0, wy = view.cy + (e.offsetY - H / 2) / s0;
    view.z = Math.min(21, view.z + 1); view.cx = wx; view.cy = wy; redraw();
  });
  $("fit").onclick = function () { fit(0, N); redraw(); };
  basemap.checked = navigator.onLine;
  basemap.onchange = coverage.onchange = redraw;
  window.addEventListener("online", function () { basemap.checked = true; redraw(); });
  window.addEventListener("offline", redraw);
  window.addEventListener("resize", function () { resize(); redraw(); });

  // -- side panel ------------------------------------------------------------------------------
  function icon(kind, color) {
    var svg = { 0: '<path d="M7 1 L11 12 L7 9 L3 12 Z" fill="' + color + '" stroke="#fff"/>',
      1: '<circle cx="7" cy="7" r="5" fill="#fff" stroke="#444" stroke-width="1.5"/>',
      2: '<path d="M7 0 L14 7 L7 14 L0 7 Z" fill="#f0f" stroke="#fff"/>',
      3: '<path d="M2 2 L12 12 M12 2 L2 12" stroke="#000" stroke-width="2.5"/>' }[kind];
    return '<svg class="mk" viewBox="0 0 14 14">' + svg + "</svg>";
  }
  function table(rows) {
    return "<table>" + rows.map(function (r) {
      return "<tr>" + r.map(function (c, j) { return j ? '<td class="n">' + esc(c) + "</td>" : "<td>" + esc(c) + "</td>"; }).join("") + "</tr>";
    }).join("") + "</table>";
  }
  function side() {
    var sm = D.summary, html, i;
    $("sources").textContent = D.sources.join("  \u00b7  ");
    $("marks").innerHTML = [[0, "photo (kept), pointing where it looks"], [1, "duplicate (dropped)"],
      [2, "GPS error (dropped)"], [3, "failed"]].map(function (m) {
      return "<li>" + icon(m[0], "#4363d8") + "<span>" + m[1] + "</span></li>";
    }).join("");
    $("legend").innerHTML = D.seqs.map(function (q, k) {
      return '<li data-k="' + k + '" title="' + esc(q.id + "\n" + q.folder + (q.start ? "\nstart " + q.start : "")) + '">' +
        '<span class="sw" style="background:' + q.color + '"></span><span class="sid">' + esc(short(q.id)) + "</span>" +
        '<span class="num">' + q.photos + " photos \u00b7 " + km(q.m) + " \u00b7 " + dur(q.s) + "</span></li>";
    }).join("");
    $("legend").onclick = function (e) {
      var li = e.target.closest("li"); if (!li) return;
      var q = D.seqs[+li.dataset.k]; fit(q.o, q.o + q.n); redraw();
    };
    var rows = [["photos", sm.photos], ["sequences", sm.sequences], ["photos in sequences", sm.kept],
      ["duplicates", sm.duplicates], ["GPS errors", sm.gps], ["failed", sm.failed]];
    if (sm.downloaded) rows.push(["downloaded photos", sm.downloaded]);
    var total = 0, longest = 0;
    for (i = 0; i < S; i++) { total += D.seqs[i].m; longest = Math.max(longest, D.seqs[i].s || 0); }
    rows.push(["total length", km(total)], ["longest sequence", dur(longest)]);
    html = table(rows);
    var errs = Object.keys(sm.errors);
    if (errs.length) html += "<h2>Errors by type</h2>" + table(errs.map(function (k) { return [k, sm.errors[k]]; }));
    if (D.problems.length) html += D.problems.map(function (p) { return '<p class="note problem">' + esc(p) + "</p>"; }).join("");
    $("summary").innerHTML = html;
    if (D.uploads.length) {
      $("uploadbox").hidden = false;
      $("uploads").innerHTML = D.uploads.map(function (u) {
        var h = '<p class="note">' + esc(u.verb) + " \u00b7 " + esc(u.source) + " \u00b7 " + u.cluster_ids.length + " clusters</p>";
        h += "<table><tr><th>sequence</th><th>photos</th><th>cluster</th></tr>" + u.sequences.map(function (r) {
          return "<tr><td title=\"" + esc(r.name) + "\">" + esc(short(r.name.split("#").pop())) + '</td><td class="n">' + esc(r.images) +
            "</td><td>" + (r.error ? '<span class="reason">' + esc(r.error) + "</span>" : esc(r.cluster_id || (r.skipped ? "skipped" : ""))) + "</td></tr>";
        }).join("") + "</table>";
        if (u.failures.length) h += table(u.failures.slice(0, 200).map(function (f) { return [f.file.split("/").pop() + ": " + f.error, f.type]; }));
        return h;
      }).join("");
    }
    if (D.coverage.length) {
      $("coveragebox").hidden = false;
      var cov = D.coverage.slice().sort(function (a, b) { return b[3] - a[3]; });
      $("cover").innerHTML = '<p class="note">' + cov.length + " tiles (z" + cov[0][2] + ") hold " + sm.downloaded +
        " photos; tick \u201ccoverage\u201d to see them.</p>" +
        table([["tile z/x/y", "photos"]].concat(cov.slice(0, 30).map(function (c) { return [c[2] + "/" + c[0] + "/" + c[1], c[3]]; })));
    }
    if (D.unlocated.length) {
      $("unlocatedbox").hidden = false;
      $("unlocated").innerHTML = table(D.unlocated.slice(0, 300).map(function (u) { return [u[0].split("/").pop() + (u[2] ? ": " + u[2] : ""), u[1]]; })) +
        (D.unlocated.length > 300 ? '<p class="note">\u2026 and ' + (D.unlocated.length - 300) + " more</p>" : "");
    }
  }

  // -- gap chart: what cut each sequence, against the steps inside sequences -------------------
  function gaps() {
    var c = $("gaps"), g = c.getContext("2d"), w = c.width, h = c.height, L = 46, B = 24;
    var lo = -1, hi = 6, i, k;
    function px(v) { return L + (Math.log10(Math.max(v, 0.1)) - lo) / (hi - lo) * (w - L - 6); }
    function py(v) { return h - B - (Math.log10(Math.max(v, 0.1)) - lo) / (hi - lo) * (h - B - 6); }
    g.fillStyle = "#fff"; g.fillRect(0, 0, w, h);
    g.strokeStyle = "#ddd"; g.fillStyle = "#666"; g.font = "10px system-ui, sans-serif"; g.lineWidth = 1;
    var xt = [[1, "1s"], [60, "1min"], [3600, "1h"], [86400, "1d"]], yt = [[1, "1m"], [100, "100m"], [10000, "10km"]];
    xt.forEach(function (t) { g.beginPath(); g.moveTo(px(t[0]), 6); g.lineTo(px(t[0]), h - B); g.stroke(); g.textAlign = "center"; g.fillText(t[1], px(t[0]), h - B + 12); });
    yt.forEach(function (t) { g.beginPath(); g.moveTo(L, py(t[0])); g.lineTo(w - 6, py(t[0])); g.stroke(); g.textAlign = "right"; g.fillText(t[1], L - 3, py(t[0]) + 3); });
    g.textAlign = "center"; g.fillText("time gap", (w + L) / 2, h - 2);
    g.save(); g.translate(8, (h - B) / 2); g.rotate(-Math.PI / 2); g.fillText("distance", 0, 0); g.restore();
    // steps inside sequences (a sample), grey
    var steps = 0, every = 0;
    for (k = 0; k < S; k++) steps += Math.max(0, D.seqs[k].n - 1);
    every = Math.max(1, Math.floor(steps / 3000));
    g.fillStyle = "rgba(120,120,120,0.35)";
    for (k = 0, steps = 0; k < S; k++) for (i = D.seqs[k].o + 1; i < D.seqs[k].o + D.seqs[k].n; i++) {
      if (steps++ % every) continue;
      var dt = (tm[i] - tm[i - 1]) / 1000, dm = dist(i - 1, i);
      if (!isNaN(dt)) g.fillRect(px(dt) - 1, py(dm) - 1, 2, 2);
    }
    g.setLineDash([4, 3]); g.strokeStyle = "#999";
    g.beginPath(); g.moveTo(px(60), 6); g.lineTo(px(60), h - B); g.moveTo(L, py(100)); g.lineTo(w - 6, py(100)); g.stroke();
    g.setLineDash([]);
    var byTime = 0, byDist = 0, other = 0;
    g.fillStyle = "#d00";
    D.gaps.forEach(function (q) {
      if (q.s == null || q.m == null) { other++; return; }
      if (q.s > 60) byTime++; else if (q.m > 100) byDist++; else other++;
      g.beginPath(); g.arc(px(q.s), py(q.m), 3, 0, 2 * Math.PI); g.fill();
    });
    $("gapnote").textContent = D.gaps.length
      ? D.gaps.length + (D.gaps.length === 1 ? " cut" : " cuts") + " (red) against the steps inside sequences (grey); dashed: the default cutoffs 60 s and 100 m. " +
        byTime + " over the time cutoff, " + byDist + " over the distance cutoff only, " + other + " by neither (length or size limit, or other cutoffs)."
      : "No sequence was cut: every folder is one sequence.";
  }
  function dist(a, b) {
    var r = Math.PI / 180, p = (lat[b] - lat[a]) * r, l = (lon[b] - lon[a]) * r;
    var x = Math.sin(p / 2) * Math.sin(p / 2) + Math.cos(lat[a] * r) * Math.cos(lat[b] * r) * Math.sin(l / 2) * Math.sin(l / 2);
    return 12742000 * Math.asin(Math.min(1, Math.sqrt(x)));
  }

  R.select = select;
  R.draw = function () { var t = performance.now(); draw(); return performance.now() - t; };
  R.zoom = function (dz) { view.z += dz; };
  R.screen = function (i) { var r = canvas.getBoundingClientRect(); return [r.left + sx[i], r.top + sy[i]]; };
  R.find = function (status) { for (var i = 0; i < N; i++) if (D.st[i] === status && seen[i]) return i; return -1; };
  R.file = file;

  resize(); fit(0, N); draw();
  side(); gaps();
  R.doneMs = performance.now();
})();
