/* charts.js: the job page's charts, drawn with Chart.js (Debian libjs-chart.js) from the job's
 * view (GET /api/jobs/ID): its per-epoch series, its events (the scheduler's decisions, manual
 * scales, faults) and its ledger. The x axis of the epoch charts is the epoch; events are
 * placed on it by their time and drawn as vertical lines (the "smltMarks" plugin below), with
 * their reasons in the tooltip of a marker at the top of each line.
 *
 * window.smltCharts holds the live Chart objects by name, and each canvas carries
 * data-points (epochs drawn) and data-marks (events drawn): the browser test reads both. */
"use strict";

(function () {
  const COLORS = {
    blue: "#1f6feb", orange: "#e8710a", green: "#2e7d32", red: "#c62828", grey: "#8a94a3",
    purple: "#7b1fa2", teal: "#00838f", brown: "#6d4c41",
  };
  const WORKER_COLORS = ["#1f6feb", "#e8710a", "#2e7d32", "#7b1fa2", "#00838f", "#c2185b",
    "#6d4c41", "#546e7a"];
  const FAULT_KINDS = ["fault", "failover", "retry", "resume", "adopt", "replicas", "heartbeat"];
  const MARK_KINDS = ["decision", "scale", "straggler", "efficiency", "target", "budget"]
    .concat(FAULT_KINDS);

  /* Vertical lines at options.plugins.smltMarks.marks: [{x, color, label}]. */
  const marksPlugin = {
    id: "smltMarks",
    afterDatasetsDraw(chart, args, opts) {
      const marks = (opts && opts.marks) || [];
      const x = chart.scales.x, area = chart.chartArea;
      if (!x || !marks.length) return;
      const ctx = chart.ctx;
      ctx.save();
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1.2;
      for (const m of marks) {
        const px = x.getPixelForValue(m.x);
        if (px < area.left - 1 || px > area.right + 1) continue;
        ctx.strokeStyle = m.color;
        ctx.beginPath();
        ctx.moveTo(px, area.top);
        ctx.lineTo(px, area.bottom);
        ctx.stroke();
      }
      ctx.restore();
    },
  };

  function epochOf(s) { return (s.epoch === undefined ? 0 : s.epoch) + 1; }

  /* An event's place on the epoch axis: interpolated between the epochs' end times, in the
   * order they were recorded (after a restore to an earlier step the epochs come again: an
   * event between the last epoch before it and the first after sits just after the former). */
  function eventX(job, t) {
    const series = job.series || [];
    const since = (t - (job.started || job.submitted || t));
    let prevX = 0, prevT = 0;
    for (const s of series) {
      let x = epochOf(s);
      const et = s.elapsed_s || 0;
      if (since <= et) {
        if (x <= prevX) x = prevX + 1;
        const f = et > prevT ? (since - prevT) / (et - prevT) : 1;
        return prevX + Math.max(0, Math.min(1, f)) * (x - prevX);
      }
      prevX = x;
      prevT = et;
    }
    return prevX;
  }

  /* The epochs as they stand (the last record of each: a restore to an earlier checkpoint
   * trains epochs again) and those a fault lost (earlier records of an epoch trained again). */
  function splitSeries(series) {
    const last = new Map();
    series.forEach((s, i) => last.set(epochOf(s), i));
    const kept = [], lost = [];
    series.forEach((s, i) => (last.get(epochOf(s)) === i ? kept : lost).push(s));
    kept.sort((a, b) => epochOf(a) - epochOf(b));
    return { kept, lost };
  }

  function markColor(kind) {
    if (FAULT_KINDS.includes(kind)) return COLORS.red;
    if (kind === "decision" || kind === "scale") return COLORS.purple;
    return COLORS.grey;
  }

  function eventLabel(e) {
    if (e.kind === "decision") {
      let s = "scheduler: " + (e.verdict || "") + " -> " + e.workers + " workers x " +
        e.shards + " shards";
      if (e.predicted_finish_s) s += ", finish predicted at " + e.predicted_finish_s.toFixed(0) + " s";
      return [s, e.reason || e.message || ""];
    }
    return [e.kind + ": " + (e.message || "")];
  }

  function marksOf(job) {
    return (job.events || []).filter((e) => MARK_KINDS.includes(e.kind) &&
      !(e.kind === "decision" && e.verdict === "keep")).map((e) => ({
      x: eventX(job, e.at), color: markColor(e.kind), label: eventLabel(e), kind: e.kind,
    }));
  }

  /* The markers at the top of the lines: a scatter dataset whose tooltip says why. */
  function markDataset(marks, yMax) {
    return {
      type: "scatter", label: "decisions and events", data: marks.map((m) => ({ x: m.x, y: yMax })),
      yAxisID: "y", pointStyle: "triangle", pointRadius: 6, pointHoverRadius: 8, rotation: 180,
      backgroundColor: marks.map((m) => m.color), borderColor: marks.map((m) => m.color),
      smltLabels: marks.map((m) => m.label),
    };
  }

  function tooltipLabel(ctx) {
    const ds = ctx.dataset;
    if (ds.smltLabels) return ds.smltLabels[ctx.dataIndex];
    const v = ctx.parsed.y;
    const unit = ds.smltUnit || "";
    return ds.label + ": " + (Math.abs(v) < 0.01 && v !== 0 ? v.toPrecision(3) : +v.toFixed(4)) + unit;
  }

  function baseOptions(yTitle, extra) {
    const o = {
      responsive: true, maintainAspectRatio: false, animation: false, parsing: true,
      interaction: { mode: "nearest", intersect: false },
      plugins: {
        legend: { labels: { boxWidth: 12 } },
        tooltip: { callbacks: { label: tooltipLabel } },
        smltMarks: { marks: [] },
      },
      scales: {
        x: { type: "linear", title: { display: true, text: "epoch" }, ticks: { precision: 0 } },
        y: { title: { display: true, text: yTitle }, beginAtZero: true },
      },
    };
    return Object.assign(o, extra || {});
  }

  function line(label, data, color, extra) {
    return Object.assign({ type: "line", label, data, borderColor: color, backgroundColor: color,
      pointRadius: 2, borderWidth: 2, tension: 0 }, extra || {});
  }

  const charts = {};
  window.smltCharts = charts;

  function put(name, canvas, config, points, marks) {
    if (!config.type) config.type = "line";
    let ch = charts[name];
    if (ch && (ch.canvas !== canvas || ch.config.type !== config.type)) {
      ch.destroy();
      ch = null;
    }
    if (!ch) {
      ch = new window.Chart(canvas.getContext("2d"), config);
      charts[name] = ch;
    } else {
      ch.data = config.data;
      ch.options.plugins.smltMarks.marks = config.options.plugins.smltMarks.marks;
      if (config.options.scales) ch.options.scales = config.options.scales;
      ch.update("none");
    }
    canvas.dataset.points = String(points);
    canvas.dataset.marks = String(marks);
  }

  function pts(series, f) {
    return series.map((s) => ({ x: epochOf(s), y: f(s) }));
  }

  function withMarks(cfg, marks, yMax) {
    cfg.options.plugins.smltMarks.marks = marks;
    if (marks.length) cfg.data.datasets.push(markDataset(marks, yMax));
    return cfg;
  }

  function maxOf(values, floor) {
    return values.reduce((a, b) => (b > a ? b : a), floor || 0);
  }

  function quality(job, series, marks, lost) {
    const acc = pts(series, (s) => 100 * (s.test_accuracy || 0));
    const cfg = {
      data: { datasets: [
        line("train loss", pts(series, (s) => s.train_loss || 0), COLORS.blue),
        line("test loss", pts(series, (s) => s.test_loss || 0), COLORS.orange),
        line("test accuracy", acc, COLORS.green, { yAxisID: "y2", smltUnit: " %" }),
      ] },
      options: baseOptions("loss"),
    };
    if (lost.length)
      cfg.data.datasets.push(line("train loss of epochs lost to a fault (trained again)",
        pts(lost, (s) => s.train_loss || 0), COLORS.grey,
        { showLine: false, pointStyle: "crossRot", pointRadius: 5 }));
    cfg.options.scales.y2 = { position: "right", min: 0, max: 100,
      title: { display: true, text: "test accuracy (%)" }, grid: { drawOnChartArea: false } };
    const yMax = maxOf(series.map((s) => Math.max(s.train_loss || 0, s.test_loss || 0)), 0.1);
    cfg.options.scales.y.suggestedMax = yMax * 1.05;
    return withMarks(cfg, marks, yMax * 1.05);
  }

  function split(job, series) {
    const bar = (label, key, color) => ({ type: "bar", label, backgroundColor: color,
      data: pts(series, (s) => s[key] || 0), smltUnit: " s", stack: "t" });
    const cfg = {
      type: "bar",
      data: { datasets: [
        bar("compute", "compute_s", COLORS.blue), bar("communication", "comm_s", COLORS.orange),
        bar("waiting", "wait_s", COLORS.red), bar("other", "other_s", COLORS.grey),
      ] },
      options: baseOptions("seconds per epoch"),
    };
    cfg.options.scales.x.stacked = true;
    cfg.options.scales.x.offset = true;
    cfg.options.scales.y.stacked = true;
    return cfg;
  }

  function workers(job, series) {
    const n = maxOf(series.map((s) => (s.worker_step_s || []).length));
    const ds = [];
    for (let k = 0; k < n; k++) {
      const data = series.filter((s) => (s.worker_step_s || [])[k] > 0)
        .map((s) => ({ x: epochOf(s), y: 1000 * s.worker_step_s[k] }));
      ds.push(line("worker " + k, data, WORKER_COLORS[k % WORKER_COLORS.length],
        { smltUnit: " ms" }));
    }
    return { data: { datasets: ds }, options: baseOptions("step time: compute + communication (ms)") };
  }

  function spend(job, series, marks) {
    const cost = pts(series, (s) => s.cost_usd || 0);
    const ds = [line("spend", cost, COLORS.blue, { smltUnit: " $", fill: false })];
    const last = series.length ? epochOf(series[series.length - 1]) : 1;
    let yMax = maxOf(cost.map((p) => p.y), 1e-6);
    if (job.budget_usd > 0) {
      ds.push(line("budget", [{ x: 0, y: job.budget_usd }, { x: Math.max(last, 1), y: job.budget_usd }],
        COLORS.red, { borderDash: [6, 4], pointRadius: 0, smltUnit: " $" }));
      yMax = Math.max(yMax, job.budget_usd);
    }
    const cfg = { data: { datasets: ds }, options: baseOptions("US dollars") };
    return withMarks(cfg, marks, yMax);
  }

  function finish(job, series, marks) {
    const ds = [line("elapsed", pts(series, (s) => s.elapsed_s || 0), COLORS.blue, { smltUnit: " s" })];
    const pred = (job.events || []).filter((e) => e.kind === "decision" && e.predicted_finish_s > 0)
      .map((e) => ({ x: eventX(job, e.at), y: e.predicted_finish_s }));
    if (pred.length)
      ds.push(line("predicted finish", pred, COLORS.purple, { showLine: false, pointRadius: 4,
        pointStyle: "rectRot", smltUnit: " s" }));
    let yMax = maxOf(series.map((s) => s.elapsed_s || 0), 1);
    yMax = maxOf(pred.map((p) => p.y), yMax);
    if (job.deadline_s > 0) {
      const last = series.length ? epochOf(series[series.length - 1]) : 1;
      ds.push(line("deadline", [{ x: 0, y: job.deadline_s }, { x: Math.max(last, 1), y: job.deadline_s }],
        COLORS.red, { borderDash: [6, 4], pointRadius: 0, smltUnit: " s" }));
      yMax = Math.max(yMax, job.deadline_s);
    }
    const cfg = { data: { datasets: ds }, options: baseOptions("seconds since the start") };
    return withMarks(cfg, marks, yMax);
  }

  function fanout(job, series, marks) {
    const ds = [
      line("workers", pts(series, (s) => s.workers || 0), COLORS.blue, { stepped: "before" }),
      line("shards", pts(series, (s) => s.shards || 0), COLORS.orange, { stepped: "before" }),
    ];
    const cfg = { data: { datasets: ds }, options: baseOptions("count") };
    cfg.options.scales.y.ticks = { precision: 0 };
    const yMax = maxOf(series.map((s) => Math.max(s.workers || 0, s.shards || 0)), 1) + 1;
    cfg.options.scales.y.suggestedMax = yMax;
    return withMarks(cfg, marks, yMax);
  }

  function invocations(job, series) {
    const has = series.some((s) => s.cold_starts !== undefined);
    if (has) {
      const ds = [
        line("cold starts", pts(series, (s) => s.cold_starts || 0), COLORS.blue, { fill: true,
          backgroundColor: "rgba(31,111,235,0.25)" }),
        line("warm starts", pts(series, (s) => s.warm_starts || 0), COLORS.orange, { fill: true,
          backgroundColor: "rgba(232,113,10,0.25)" }),
      ];
      const cfg = { data: { datasets: ds }, options: baseOptions("invocations so far") };
      cfg.options.scales.y.ticks = { precision: 0 };
      return cfg;
    }
    const inv = job.invocations || {};
    return {
      type: "bar",
      data: { labels: ["cold", "warm", "lost"], datasets: [{ label: "invocations",
        data: [inv.cold || 0, inv.warm || 0, inv.lost || 0],
        backgroundColor: [COLORS.blue, COLORS.orange, COLORS.red] }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false }, smltMarks: { marks: [] } } },
    };
  }

  function ledger(job) {
    const l = job.ledger || {};
    return {
      type: "doughnut",
      data: { labels: ["function time", "requests", "PS nodes"], datasets: [{
        data: [l.function_usd || 0, l.request_usd || 0, l.ps_usd || 0],
        backgroundColor: [COLORS.blue, COLORS.orange, COLORS.teal], smltUnit: " $" }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { smltMarks: { marks: [] }, legend: { position: "right" },
          tooltip: { callbacks: { label: (c) => c.label + ": $" + (+c.parsed).toFixed(6) } } } },
    };
  }

  /* Draws (or updates) every chart of the job page in root. */
  function render(root, job) {
    if (!window.Chart) return false;
    if (!window.Chart.registry.plugins.get("smltMarks")) window.Chart.register(marksPlugin);
    const { kept: series, lost } = splitSeries(job.series || []);
    const marks = marksOf(job);
    const c = (id) => root.querySelector("#" + id);
    const n = series.length;
    put("quality", c("c-quality"), quality(job, series, marks, lost), n, marks.length);
    put("split", c("c-split"), split(job, series), n, 0);
    put("workers", c("c-workers"), workers(job, series), n, 0);
    put("spend", c("c-spend"), spend(job, series, marks), n, marks.length);
    put("finish", c("c-finish"), finish(job, series, marks), n, marks.length);
    put("fanout", c("c-fanout"), fanout(job, series, marks), n, marks.length);
    put("invocations", c("c-invocations"), invocations(job, series), n, 0);
    put("ledger", c("c-ledger"), ledger(job), n, 0);
    return true;
  }

  function clear() {
    for (const k of Object.keys(charts)) {
      charts[k].destroy();
      delete charts[k];
    }
  }

  window.SmltCharts = { render, clear, marksOf, splitSeries };
})();
