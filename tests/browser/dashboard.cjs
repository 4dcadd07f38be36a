// tests/browser/dashboard.cjs: drives Debian's Chromium (headless, through npm playwright-core,
// a test-only dependency) against a coordinator that runs a real job. Started by
// tests/integration/test_dashboard.c, which has made the job and scaled it:
//
//   node dashboard.cjs --url http://127.0.0.1:PORT --token T --job ID [--screenshot F.png]
//   node dashboard.cjs --url ... --token T --job ID --nodes N [--screenshot F.png]
//
// With --nodes, only the nodes page, against a coordinator with a pool of N PS nodes that runs
// the job: N rows, each node up with its memory shown, the job's shards listed on the nodes
// the API places them on (linked to the job's page), and no console errors.
//
// Checks, each failing the run with a message:
//   - the job list shows the job, with its state and workers x shards;
//   - logging in goes through the form, and the token appears in no URL the page requests;
//   - the job page's charts hold one point per epoch that the API reports, and the manual
//     scale is annotated on them (a mark of kind "scale");
//   - a bad spec submitted through the form is refused with the message next to the field it
//     names;
//   - a torch job submitted through the form with its training file (worker/python/examples/
//     fmnist_cnn.py) is accepted as "python:fmnist_cnn.py" and its page names it;
//   - the nodes page says the coordinator is in local mode (no pool);
//   - at a narrow width (390 px) the page does not scroll sideways;
//   - the browser console shows no error, and no page error is thrown.
// Exit status 0 when all pass; the screenshot (laptop width) is written where asked.
"use strict";

const path = require("path");
const os = require("os");

function arg(name, def) {
  const i = process.argv.indexOf("--" + name);
  return i > 0 ? process.argv[i + 1] : def;
}

const url = arg("url");
const token = arg("token");
const job = arg("job");
const shot = arg("screenshot", "");
const nodes = +arg("nodes", "0");
const npmDir = process.env.SMLT_NPM_DIR || path.join(os.homedir(), ".cache", "smlt", "npm");
const chromium = process.env.SMLT_CHROMIUM || "/usr/bin/chromium";

function fail(msg) {
  console.error("dashboard test: " + msg);
  process.exit(1);
}

async function main() {
  if (!url || !token || !job) fail("usage: dashboard.cjs --url URL --token T --job ID");
  let pw;
  try {
    pw = require(path.join(npmDir, "node_modules", "playwright-core"));
  } catch (e) {
    fail("npm playwright-core is not in " + npmDir + " (tools/test.sh installs it): " + e.message);
  }
  const browser = await pw.chromium.launch({ executablePath: chromium,
    args: ["--no-sandbox", "--disable-gpu"] });
  const errors = [];
  const urls = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    // The one error expected: the refused spec's 400, while that step runs (Chromium logs every
    // 4xx response to the console).
    let refusing = false;
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      if (refusing && /status of 400/.test(m.text())) return;
      errors.push("console: " + m.text());
    });
    page.on("pageerror", (e) => errors.push("page error: " + e.message));
    page.on("request", (r) => urls.push(r.url()));

    // The job list.
    await page.goto(url + "/#/", { waitUntil: "load" });
    const row = page.locator(`tr[data-job="${job}"]`);
    await row.waitFor({ timeout: 15000 });
    const rowText = await row.innerText();
    if (!/succeeded|running/.test(rowText)) fail("job row without its state: " + rowText);
    if (!/\d+ \u00d7 \d+/.test(rowText)) fail("job row without workers x shards: " + rowText);

    // Log in through the form.
    await page.fill("#token", token);
    await page.click("#login button");
    await page.locator("#who").waitFor({ state: "visible", timeout: 5000 });

    if (nodes > 0) {
      await checkNodes(page, url, token, job, nodes);
      if (shot) await page.screenshot({ path: shot, fullPage: true });
      for (const u of urls) if (u.includes(token)) fail("the token went into a URL: " + u);
      if (errors.length) fail("browser errors:\n  " + errors.join("\n  "));
      console.log(`dashboard test: nodes ok (${nodes} nodes, the job's shards placed on them)`);
      return;
    }

    // The nodes page of a coordinator without a pool: local mode, said.
    await page.goto(url + "/#/nodes", { waitUntil: "load" });
    await page.locator("#view .local").waitFor({ state: "visible", timeout: 10000 });

    // The job page: one point per epoch of the API's series, and the scale annotated.
    await page.goto(url + "/#/jobs/" + encodeURIComponent(job), { waitUntil: "load" });
    const api = await (await page.request.get(url + "/api/jobs/" + encodeURIComponent(job))).json();
    // One point per epoch: the distinct epochs (a restore would train some again).
    const epochs = new Set((api.series || []).map((e) => e.epoch)).size;
    if (epochs < 2) fail("the API reports " + epochs + " epochs; the test needs 2 or more");
    await page.waitForFunction((n) => {
      const c = document.querySelector("#c-quality");
      return c && c.dataset.points === String(n);
    }, epochs, { timeout: 15000 });
    const got = await page.evaluate(() => {
      const out = {};
      for (const [k, ch] of Object.entries(window.smltCharts))
        out[k] = { points: ch.canvas.dataset.points, first: (ch.data.datasets[0] || { data: [] }).data.length };
      out.marks = window.smltCharts.quality.options.plugins.smltMarks.marks.map((m) => m.kind);
      return out;
    });
    for (const name of ["quality", "split", "spend", "finish", "fanout"]) {
      if (!got[name]) fail("no chart " + name);
      if (got[name].first !== epochs)
        fail(`chart ${name} has ${got[name].first} points; the API reports ${epochs} epochs`);
    }
    if (!got.marks.includes("scale")) fail("no annotation of the scale on the charts: " + got.marks.join(","));
    const evScale = await page.locator('ol.events li[data-kind="scale"]').count();
    if (!evScale) fail("the scale is not in the events list");
    if (shot) await page.screenshot({ path: shot, fullPage: true });

    // A refused spec: the message goes next to the field it names.
    await page.goto(url + "/#/submit", { waitUntil: "load" });
    await page.locator("#submit").waitFor();
    await page.fill('#submit input[name="budget_usd"]', "-1");
    refusing = true;
    await page.click('#submit button[type="submit"]');
    const fe = page.locator('#submit .field-error[data-for="budget_usd"]');
    await fe.waitFor({ timeout: 5000 });
    refusing = false;
    const feText = await fe.innerText();
    if (!/budget_usd/.test(feText)) fail("the refusal next to budget_usd says: " + feText);

    // A torch job from the form: its training file is read by the page and sent with the
    // spec; the job page names it. Canceled right away (its training is python.test_torch_job's).
    const cnn = path.join(__dirname, "..", "..", "worker", "python", "examples", "fmnist_cnn.py");
    await page.goto(url + "/#/submit", { waitUntil: "load" });
    await page.locator("#submit").waitFor();
    await page.fill('#submit input[name="budget_usd"]', "");
    await page.fill('#submit input[name="epochs"]', "1");
    await page.fill('#submit input[name="workers"]', "1");
    await page.fill('#submit input[name="shards"]', "1");
    await page.setInputFiles('#submit input[name="model_file"]', cnn);
    await page.click('#submit button[type="submit"]');
    await page.waitForFunction(() => location.hash.startsWith("#/jobs/"), null, { timeout: 10000 });
    const torchJob = decodeURIComponent((await page.evaluate(() => location.hash)).slice(7));
    const tj = await (await fetch(url + "/api/jobs/" + encodeURIComponent(torchJob),
      { headers: { Authorization: "Bearer " + token } })).json();
    if (tj.spec.model !== "python:fmnist_cnn.py")
      fail("the torch job from the form has model " + JSON.stringify(tj.spec.model));
    await page.waitForFunction(() => document.body.innerText.includes("python:fmnist_cnn.py"),
      null, { timeout: 10000 });
    const cr = await fetch(url + "/api/jobs/" + encodeURIComponent(torchJob) + "/cancel",
      { method: "POST", headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
        body: "{}" });
    if (cr.status === 409) {
      // Already ended: where the build has no Python package (the sanitizer build does not
      // make one), the job's set-up fails at once and the job is failed, with that message.
      const te = await (await fetch(url + "/api/jobs/" + encodeURIComponent(torchJob),
        { headers: { Authorization: "Bearer " + token } })).json();
      if (!["failed", "canceled", "done"].includes(te.state))
        fail("canceling the torch job: HTTP 409 while it is " + te.state);
      console.log("dashboard test: the torch job had already ended (" + te.state + ": " +
        (te.error || te.reason || "") + ")");
    } else if (cr.status !== 200) fail("canceling the torch job: HTTP " + cr.status);

    // A narrow screen: no sideways scrolling.
    await page.setViewportSize({ width: 390, height: 800 });
    await page.goto(url + "/#/jobs/" + encodeURIComponent(job), { waitUntil: "load" });
    await page.waitForFunction(() => document.querySelector("#c-quality") &&
      document.querySelector("#c-quality").dataset.points !== undefined, null, { timeout: 15000 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth -
      document.documentElement.clientWidth);
    if (overflow > 1) fail("the job page scrolls sideways by " + overflow + " px at 390 px wide");

    for (const u of urls) if (u.includes(token)) fail("the token went into a URL: " + u);
    if (errors.length) fail("browser errors:\n  " + errors.join("\n  "));
    console.log(`dashboard test: ok (${epochs} epochs charted, marks: ${got.marks.join(",")}, ` +
      `${urls.length} requests, no console errors)`);
  } finally {
    await browser.close();
  }
}

// The nodes page against the pool's API: a row per node, up, its memory, and each of the job's
// shards on the node the API places it on.
async function checkNodes(page, url, token, job, n) {
  await page.goto(url + "/#/nodes", { waitUntil: "load" });
  await page.waitForFunction((k) => document.querySelectorAll("table.nodes tr[data-node]").length === k,
    n, { timeout: 15000 });
  const api = await (await fetch(url + "/api/nodes", { headers: { Authorization: "Bearer " + token } })).json();
  if (api.mode !== "pool" || api.nodes.length !== n)
    fail("the API reports mode " + api.mode + " with " + (api.nodes || []).length + " nodes; want a pool of " + n);
  let placed = 0;
  for (const node of api.nodes) {
    const row = page.locator(`table.nodes tr[data-node="${node.addr}"]`);
    await page.waitForFunction((a) => {
      const r = document.querySelector(`table.nodes tr[data-node="${a}"]`);
      return r && r.innerText.includes("up");
    }, node.addr, { timeout: 15000 });
    const text = await row.innerText();
    if (!/ of \d/.test(text) || !/free/.test(text)) fail("node " + node.addr + " without its memory: " + text);
    for (const p of node.placed || []) {
      if (p.job !== job) continue;
      placed++;
      const want = p.role === "backup" ? `shard ${p.shard} (backup)` : `shard ${p.shard}`;
      if (!text.includes(job + " " + want)) fail(`node ${node.addr}: the API places ${job} ${want} there; the row says: ${text}`);
      const links = await row.locator(`a[href="#/jobs/${encodeURIComponent(job)}"]`).count();
      if (!links) fail("node " + node.addr + ": no link to " + job);
    }
  }
  if (!placed) fail("the API places none of " + job + "'s shards on the pool");
}

main().catch((e) => fail(e.stack || String(e)));
