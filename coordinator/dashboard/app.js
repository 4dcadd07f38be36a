/* app.js: the dashboard's pages (#/ the jobs, #/jobs/ID one job, #/submit, #/nodes the PS
 * node pool), drawn from the coordinator's JSON API, polled every two seconds while the tab is
 * visible.
 *
 * The admin token is typed into the login form and kept in this tab's sessionStorage only; it
 * goes to the coordinator in an "Authorization: Bearer" header, never in a URL (the model is
 * downloaded with fetch() and handed to the browser as a blob). Actions (submit, cancel, scale,
 * checkpoint) need it; reads need it only when the coordinator listens beyond loopback, which
 * the page learns from a 401. */
"use strict";

(function () {
  const POLL_MS = 2000;
  const TOKEN_KEY = "smlt-admin-token";
  const $ = (sel, root) => (root || document).querySelector(sel);
  let timer = null;
  let route = "";

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function showLogin() {
    const t = token();
    $("#login").hidden = !!t;
    $("#who").hidden = !t;
  }

  function notice(msg, bad) {
    const n = $("#notice");
    n.textContent = msg || "";
    n.hidden = !msg;
    n.classList.toggle("error", !!bad);
  }

  /* fetch() with the token; resolves to {status, body} (body: parsed JSON, or a Blob). */
  async function api(method, path, body, blob) {
    const headers = {};
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body) });
    if (blob && r.ok) return { status: r.status, body: await r.blob() };
    let parsed = null;
    try { parsed = await r.json(); } catch (e) { parsed = null; }
    if (r.status === 401) {
      notice(t ? "The coordinator refused the token: log in again." :
        "This needs the admin token: log in above.", true);
      if (t) { sessionStorage.removeItem(TOKEN_KEY); showLogin(); }
    }
    return { status: r.status, body: parsed };
  }

  /* ---- formatting ---- */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  const usd = (v) => "$" + (v >= 1 ? v.toFixed(2) : v >= 0.01 ? v.toFixed(4) : (v || 0).toFixed(6));
  function dur(s) {
    if (!(s >= 0)) return "-";
    if (s < 90) return s.toFixed(1) + " s";
    if (s < 5400) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(2) + " h";
  }
  const pct = (v) => (100 * (v || 0)).toFixed(2) + " %";
  const ended = (st) => !["queued", "starting", "running"].includes(st);

  function progressCell(j) {
    const frac = j.total_steps > 0 ? Math.min(1, j.step / j.total_steps) : 0;
    const bar = el("span", { class: "progress", title: (100 * frac).toFixed(0) + " %" },
      el("span", { style: "width:" + (100 * frac).toFixed(1) + "%" }));
    return el("td", {}, bar, "epoch " + j.epoch,
      el("span", { class: "steps", text: "step " + j.step + (j.total_steps ? " of " + j.total_steps : "") }));
  }

  function spendCell(j) {
    const over = j.budget_usd > 0 && j.cost_usd > j.budget_usd;
    return el("td", { class: over ? "over" : "" },
      usd(j.cost_usd) + (j.budget_usd > 0 ? " / " + usd(j.budget_usd) : ""));
  }

  function timeCell(j) {
    const over = j.deadline_s > 0 && j.elapsed_s > j.deadline_s;
    return el("td", { class: over ? "over" : "" },
      dur(j.elapsed_s) + (j.deadline_s > 0 ? " / " + dur(j.deadline_s) : ""));
  }

  /* ---- the jobs ---- */
  async function showJobs(view) {
    const r = await api("GET", "/api/jobs");
    if (r.status !== 200) return;
    if (!view.firstElementChild || view.dataset.page !== "jobs") {
      view.replaceChildren($("#t-jobs").content.cloneNode(true));
      view.dataset.page = "jobs";
    }
    const tbody = $("table.jobs tbody", view);
    const jobs = (r.body.jobs || []).slice().sort((a, b) => b.submitted - a.submitted);
    $(".empty", view).hidden = jobs.length > 0;
    const rows = [];
    for (const j of jobs) {
      const link = el("a", { href: "#/jobs/" + encodeURIComponent(j.id), text: j.id });
      rows.push(el("tr", { "data-job": j.id },
        el("td", {}, link, j.name ? " " + j.name : ""),
        el("td", {}, el("span", { class: "state " + j.state, text: j.state })),
        progressCell(j),
        el("td", { text: j.test_accuracy > 0 ? pct(j.test_accuracy) : "-" }),
        spendCell(j), timeCell(j),
        el("td", { text: j.workers + " \u00d7 " + j.shards })));
      const why = j.state === "failed" ? j.error : ended(j.state) ? j.reason : "";
      if (why) rows.push(el("tr", {}, el("td", { class: "why", colspan: "7", text: why })));
    }
    tbody.replaceChildren(...rows);
  }

  /* ---- one job ---- */
  function facts(j) {
    const f = [
      ["progress", "epoch " + j.epoch + (j.epochs_target ? " of " + j.epochs_target : ""),
        "step " + j.step + (j.total_steps ? " of " + j.total_steps : "")],
      ["test accuracy", j.test_accuracy > 0 ? pct(j.test_accuracy) : "-",
        "best " + (j.best_accuracy > 0 ? pct(j.best_accuracy) : "-") +
        (j.target_accuracy > 0 ? ", target " + pct(j.target_accuracy) : "")],
      ["train loss", (j.train_loss || 0).toFixed(4), "test loss " + (j.test_loss || 0).toFixed(4)],
      ["spend", usd(j.cost_usd), j.budget_usd > 0 ? "budget " + usd(j.budget_usd) : "no budget"],
      ["time", dur(j.elapsed_s), j.deadline_s > 0 ? "deadline " + dur(j.deadline_s) : "no deadline"],
      ["workers \u00d7 shards", j.workers + " \u00d7 " + j.shards,
        (j.invocations ? j.invocations.total + " invocations, " + j.invocations.cold + " cold" : "")],
    ];
    return f.map(([k, v, sub]) => el("div", {}, el("b", { text: v }), el("span", { text: k + (sub ? " \u00b7 " + sub : "") })));
  }

  function eventItem(e) {
    const t = new Date(e.at * 1000).toLocaleTimeString();
    let msg = e.message || "";
    if (e.kind === "decision")
      msg = e.verdict + ": " + e.workers + " workers \u00d7 " + e.shards + " shards" +
        (e.predicted_finish_s ? ", finish predicted at " + dur(e.predicted_finish_s) : "") +
        (e.predicted_cost_usd ? ", cost " + usd(e.predicted_cost_usd) : "") + ". " + (e.reason || "");
    return el("li", { "data-kind": e.kind }, el("span", { class: "kind " + e.kind, text: e.kind }),
      " " + t + " \u2014 " + msg);
  }

  function profileRows(p) {
    if (!p) return [el("tr", {}, el("td", { class: "muted", text: "no profile (the job has no deadline or budget, or has not reached it)" }))];
    const rows = [];
    for (const [k, v] of Object.entries(p)) {
      if (v === null || typeof v === "object") continue;
      const val = typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v);
      rows.push(el("tr", {}, el("th", { text: k.replace(/_/g, " ") }), el("td", { text: val })));
    }
    return rows;
  }

  async function showJob(view, id) {
    const r = await api("GET", "/api/jobs/" + encodeURIComponent(id));
    if (r.status === 404) {
      view.replaceChildren(el("p", { text: "No job " + id + ". " }, el("a", { href: "#/", text: "All jobs" })));
      view.dataset.page = "";
      return;
    }
    if (r.status !== 200) return;
    const j = r.body;
    if (view.dataset.page !== "job:" + id) {
      window.SmltCharts.clear();
      view.replaceChildren($("#t-job").content.cloneNode(true));
      view.dataset.page = "job:" + id;
      wireJobActions(view, id);
      $("input[name=workers]", view).value = j.workers;
      $("input[name=shards]", view).value = j.shards;
    }
    $(".job-id", view).textContent = j.id + (j.name ? " " + j.name : "") +
      (j.spec && j.spec.model ? " \u00b7 " + j.spec.model : "");
    const st = $(".state", view);
    st.textContent = j.state;
    st.className = "state " + j.state;
    const reason = $(".reason", view);
    const why = j.state === "failed" ? j.error : ended(j.state) ? j.reason : "";
    reason.hidden = !why;
    reason.textContent = why || "";
    reason.classList.toggle("bad", j.state === "failed" || j.state === "interrupted");
    for (const b of view.querySelectorAll(".actions button"))
      b.disabled = b.dataset.act === "model" ? !j.model : ended(j.state) && b.dataset.act !== "checkpoint";
    $(".facts", view).replaceChildren(...facts(j));
    const events = (j.events || []).slice().reverse();
    $("ol.events", view).replaceChildren(...(events.length ? events.map(eventItem) :
      [el("li", { class: "muted", text: "none yet" })]));
    $("table.profile", view).replaceChildren(...profileRows(j.profile));
    if (!window.SmltCharts.render(view, j))
      notice("Chart.js did not load (is Debian's libjs-chart.js installed on the coordinator?)", true);
  }

  function wireJobActions(view, id) {
    const base = "/api/jobs/" + encodeURIComponent(id);
    view.querySelector(".actions").addEventListener("click", async (ev) => {
      const act = ev.target.dataset && ev.target.dataset.act;
      if (!act) return;
      if (!token()) { notice("Actions need the admin token: log in above.", true); return; }
      let r;
      if (act === "scale") {
        const w = +$("input[name=workers]", view).value, s = +$("input[name=shards]", view).value;
        r = await api("POST", base + "/scale", { workers: w, shards: s });
        if (r.status === 200) notice("Scale to " + w + " workers \u00d7 " + s + " shards requested: it applies at the next epoch boundary.");
      } else if (act === "checkpoint") {
        notice("Saving the model...");
        r = await api("POST", base + "/checkpoint", {});
        if (r.status === 200) notice("Model saved: " + r.body.path);
      } else if (act === "cancel") {
        if (!window.confirm("Cancel " + id + "? Its model so far is saved.")) return;
        r = await api("POST", base + "/cancel", {});
        if (r.status === 200) notice(id + " canceled.");
      } else if (act === "model") {
        r = await api("GET", base + "/model", undefined, true);
        if (r.status === 200) {
          const a = el("a", { href: URL.createObjectURL(r.body), download: id + ".smlt" });
          document.body.append(a);
          a.click();
          a.remove();
          setTimeout(() => URL.revokeObjectURL(a.href), 10000);
        }
      }
      if (r && r.status !== 200 && r.status !== 401)
        notice((r.body && r.body.error) || ("HTTP " + r.status), true);
      refresh();
    });
  }

  /* ---- the PS nodes ---- */
  function bytes(v) {
    if (!(v >= 0)) return "-";
    if (v >= 1 << 30) return (v / (1 << 30)).toFixed(2) + " GiB";
    return (v / (1 << 20)).toFixed(v >= 100 << 20 ? 0 : 1) + " MiB";
  }

  function memoryCell(n) {
    const frac = n.capacity_bytes > 0 ? Math.min(1, n.used_bytes / n.capacity_bytes) : 0;
    const bar = el("span", { class: "progress", title: (100 * frac).toFixed(0) + " %" },
      el("span", { style: "width:" + (100 * frac).toFixed(1) + "%" }));
    return el("td", {}, bar, bytes(n.used_bytes) + " of " + bytes(n.capacity_bytes),
      el("span", { class: "steps", text: bytes(n.free_bytes) + " free" }));
  }

  function placedCell(n) {
    const td = el("td", { class: "placed" });
    const placed = n.placed || [];
    if (!placed.length) td.append(el("span", { class: "muted", text: "none" }));
    placed.forEach((p, i) => {
      if (i) td.append(", ");
      td.append(el("a", { href: "#/jobs/" + encodeURIComponent(p.job), text: p.job }),
        " shard " + p.shard + (p.role === "backup" ? " (backup)" : ""));
    });
    return td;
  }

  async function showNodes(view) {
    const r = await api("GET", "/api/nodes");
    if (r.status !== 200) return;
    if (view.dataset.page !== "nodes") {
      view.replaceChildren($("#t-nodes").content.cloneNode(true));
      view.dataset.page = "nodes";
    }
    const local = r.body.mode !== "pool";
    const nodes = r.body.nodes || [];
    $(".local", view).hidden = !local;
    $(".table-wrap", view).hidden = local;
    const up = nodes.filter((n) => n.state === "up").length;
    $(".pool", view).textContent = local ? "" :
      nodes.length + " nodes, " + up + " up \u00b7 pool " + (r.body.pool || "");
    const rows = [];
    for (const n of nodes) {
      rows.push(el("tr", { "data-node": n.addr },
        el("td", {}, el("b", { text: n.name || n.addr }), n.name && n.name !== n.addr ?
          el("span", { class: "steps", text: n.addr }) : null),
        el("td", {}, el("span", { class: "state " + n.state, text: n.state })),
        memoryCell(n),
        el("td", { text: String(n.shards) + (n.refused ? " (" + n.refused + " refused)" : "") }),
        placedCell(n),
        el("td", { text: String(n.connections) }),
        el("td", { text: n.since_ok_s === null || n.since_ok_s === undefined ? "never" :
          dur(n.since_ok_s) + " ago" })));
      if (n.error) rows.push(el("tr", {}, el("td", { class: "why", colspan: "7", text: n.error })));
    }
    $("tbody", view).replaceChildren(...rows);
  }

  /* ---- submit ---- */
  function showSubmit(view) {
    if (view.dataset.page === "submit") return;
    view.replaceChildren($("#t-submit").content.cloneNode(true));
    view.dataset.page = "submit";
    const form = $("#submit", view);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      for (const e of form.querySelectorAll(".field-error:not([data-for=spec])")) e.remove();
      for (const e of form.querySelectorAll(".invalid")) e.classList.remove("invalid");
      const errSpec = $(".field-error[data-for=spec]", form);
      errSpec.hidden = true;
      if (!token()) { notice("Submitting needs the admin token: log in above.", true); return; }
      let spec;
      try {
        spec = JSON.parse(form.elements.spec.value || "{}");
        if (typeof spec !== "object" || Array.isArray(spec) || spec === null) throw new Error("not an object");
      } catch (e) {
        errSpec.textContent = "This must be a JSON object: " + e.message;
        errSpec.hidden = false;
        form.elements.spec.classList.add("invalid");
        return;
      }
      const body = {};
      for (const name of ["model", "dataset", "epochs", "workers", "shards", "budget_usd", "deadline_s", "target_accuracy"]) {
        const v = form.elements[name].value.trim();
        if (v === "") continue;
        body[name] = form.elements[name].type === "number" ? Number(v) : v;
      }
      /* A torch job: the training file's text goes in the spec (the coordinator may not
       * see this machine's files), named python:FILE.py. */
      const file = form.elements.model_file.files[0];
      if (file) {
        body.model = "python:" + file.name;
        body.model_source = await file.text();
      }
      Object.assign(body, spec);
      const r = await api("POST", "/api/jobs", body);
      if (r.status === 201) {
        notice("Submitted " + r.body.id + ".");
        location.hash = "#/jobs/" + encodeURIComponent(r.body.id);
        return;
      }
      const msg = (r.body && r.body.error) || ("HTTP " + r.status);
      showFieldError(form, msg, errSpec);
    });
  }

  /* The refusal names its field ("budget_usd: must be > 0", "optimizer.lr: ..."): shown next
   * to that field, or under the JSON when the field is not one of the form's. */
  function showFieldError(form, msg, errSpec) {
    const m = /^([A-Za-z_][\w.]*): /.exec(msg);
    const input = m && form.elements[m[1]];
    if (input && input.tagName) {
      input.classList.add("invalid");
      input.closest("label").after(el("p", { class: "field-error", "data-for": m[1], text: msg }));
      input.focus();
    } else {
      errSpec.textContent = msg;
      errSpec.hidden = false;
      form.elements.spec.classList.add("invalid");
    }
  }

  /* ---- routing and polling ---- */
  async function refresh() {
    const view = $("#view");
    try {
      if (route.startsWith("#/jobs/")) await showJob(view, decodeURIComponent(route.slice(7)));
      else if (route === "#/submit") showSubmit(view);
      else if (route === "#/nodes") await showNodes(view);
      else await showJobs(view);
    } catch (e) {
      notice("The coordinator does not answer (" + e.message + "); retrying.", true);
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!document.hidden && route !== "#/submit") await refresh();
      schedule();
    }, POLL_MS);
  }

  function go() {
    route = location.hash || "#/";
    notice("");
    refresh();
    schedule();
  }

  $("#login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#token").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("#token").value = "";
    showLogin();
    notice("Logged in for this tab.");
    refresh();
  });
  $("#logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
    notice("Logged out.");
  });
  window.addEventListener("hashchange", go);
  showLogin();
  go();
})();
