// Warden dashboard: charts (uPlot), sortable tables, fragments loaded after the page.
// Pages work without it; no inline script anywhere (the Content-Security-Policy forbids it).
(function () {
  "use strict";

  var PALETTE = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#475569", "#ea580c", "#4f46e5", "#059669", "#be123c", "#0d9488", "#a16207", "#9333ea",
  ];

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  // The last index where any series has a value, shown in the legend when not hovered.
  function showLatest(u) {
    for (var i = u.data[0].length - 1; i >= 0; i--) {
      for (var k = 1; k < u.data.length; k++) {
        if (u.data[k][i] !== null && u.data[k][i] !== undefined) {
          u.setLegend({ idx: i }, false);
          return;
        }
      }
    }
  }

  // The x range drawn, on the chart's element: for whoever reads the page, not the canvas.
  function xRange(u) {
    var host = u.root.parentNode;
    if (!host) { return; }
    host.dataset.xMin = String(u.scales.x.min);
    host.dataset.xMax = String(u.scales.x.max);
  }

  function chart(el) {
    var spec = readJson(el.dataset.chart);
    if (!spec || typeof uPlot === "undefined") { return; }
    var data = [spec.x];
    var series = [{ label: spec.xLabel || (spec.time ? "time" : "x") }];
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      var present = s.values.filter(function (v) { return v !== null; }).length;
      series.push({
        label: s.label,
        stroke: s.color || PALETTE[i % PALETTE.length],
        width: 1.5,
        scale: s.scale || "y",
        spanGaps: false,
        // Points where there are few values to join (sparse traffic, a single step).
        points: { show: spec.x.length < 40 || present < 60 },
      });
    });
    var axes = [
      spec.xLabel ? { label: spec.xLabel } : {},
      { label: spec.yLabel || "", scale: "y", size: 60 },
    ];
    if (spec.series.some(function (s) { return s.scale === "y2"; })) {
      axes.push({ label: spec.y2Label || "", scale: "y2", side: 1, grid: { show: false } });
    }
    var opts = {
      width: Math.max(el.clientWidth, 300),
      height: spec.height || 220,
      scales: { x: { time: !!spec.time } },
      series: series,
      axes: axes,
      legend: { live: true },
      // Away from the plot, the legend shows each series' latest value, not "--".
      hooks: {
        ready: [showLatest, xRange],
        setScale: [function (u, key) { if (key === "x") { xRange(u); } }],
        setCursor: [function (u) { if (u.cursor.idx == null) { showLatest(u); } }],
      },
    };
    if (spec.yRange) { opts.scales.y = { range: spec.yRange }; }
    // A single x value (one drift job, one step) gets a range around it: uPlot's own would
    // span years on a time axis.
    var xMin = Math.min.apply(null, spec.x), xMax = Math.max.apply(null, spec.x);
    if (spec.x.length && xMin === xMax) {
      var pad = spec.time ? 3600 : 1;
      opts.scales.x.range = [xMin - pad, xMax + pad];
    }
    el.innerHTML = "";
    var plot = new uPlot(opts, data, el);
    el.classList.add("drawn");
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(el.clientWidth, 300), height: opts.height });
    });
  }

  function cellValue(row, index) {
    var cell = row.cells[index];
    var raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    return raw !== "" && !isNaN(Number(raw)) ? Number(raw) : raw.toLowerCase();
  }

  function sortable(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, index) {
      var button = th.querySelector("button[data-sort]");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function fragment(el) {
    var url = el.dataset.fragment;
    var every = parseFloat(el.dataset.poll || "0");
    function load() {
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.text().then(function (t) { return [r.status, t]; }); })
        .then(function (pair) {
          el.innerHTML = pair[1];
          el.setAttribute("aria-busy", "false");
          var done = el.querySelector("[data-done]");
          if (every && !done && pair[0] < 400) { setTimeout(load, every * 1000); }
        })
        .catch(function () {
          el.textContent = "could not load this part of the page; reload to try again";
        });
    }
    el.setAttribute("aria-busy", "true");
    load();
  }

  function start() {
    document.querySelectorAll("[data-chart]").forEach(chart);
    document.querySelectorAll("table[data-sortable]").forEach(sortable);
    document.querySelectorAll("[data-fragment]").forEach(fragment);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
