// Drives the demo page's Dashboard tab in headless Chromium through nginx while the
// front-end holding its one connection (GET /v1/events?prefix=) is killed.
//
//   node tests/clients/browser/dashboard.mjs BASE_URL SCREENSHOT.png [USER_DATA_DIR]
//
// Opens BASE_URL/#dashboard, clicks "Start 12 jobs", waits until every job has shown
// some progress, prints ONE line {"phase": "streaming", "prefix": ...} and then obeys
// lines on stdin (the test publishes more job streams under the prefix meanwhile):
//   "wait N"     waits until N streams have shown an event; prints {"phase": "seen"}
//   "killed N"   clicks "Start 4 more" (streams created after the connection, and after
//                the kill), waits until N jobs are done, and prints ONE line
//                {"phase": "result", ...}: what the page's connection received per
//                stream (seqs in arrival order), how many times it opened, and which
//                requests for /v1/events the page made; then exits.
// Exits non-zero with a message on stderr on any failure or after 90 s.

import { createInterface } from "node:readline";
import { openDemoPage, runToEnd, startScript } from "./common.mjs";

const TIMEOUT_MS = 90_000;
const { base, screenshot, openContext, fail, remaining, ...script } = await startScript(
  "dashboard.mjs",
  TIMEOUT_MS,
);
let step = "starting";
const lines = [];
const waiters = [];
createInterface({ input: process.stdin }).on("line", (line) => {
  const w = waiters.shift();
  if (w) w(line);
  else lines.push(line);
});
const nextLine = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => waiters.push(r)));

let context = null;
let page = null;
const errors = { pageErrors: [], consoleErrors: [], httpErrors: [] };
const dashboard = () => page.evaluate(() => window.__dashboard);

async function run() {
  step = `opening ${base}/#dashboard`;
  ({ context, page } = await openDemoPage(openContext, base, remaining, errors, "/#dashboard"));
  const sources = [];
  page.on("request", (r) => {
    if (r.url().includes("/v1/events")) sources.push(r.url().replace(base, ""));
  });
  step = "starting 12 jobs";
  await page.click("#dash-start", { timeout: remaining() });
  step = "waiting for every job's progress";
  await page.waitForFunction(
    () => {
      const d = window.__dashboard;
      return d.opens >= 1 && Object.keys(d.seqs).length === 12 && Object.values(d.seqs).every((s) => s.length >= 3);
    },
    null,
    { timeout: remaining(), polling: 50 },
  );
  process.stdout.write(`${JSON.stringify({ phase: "streaming", prefix: (await dashboard()).prefix })}\n`);
  for (;;) {
    step = "waiting for the test's next line";
    const [command, arg] = (await nextLine()).split(" ");
    const n = Number(arg);
    if (command === "wait") {
      step = `waiting until ${n} streams have shown an event`;
      await page.waitForFunction((n) => Object.keys(window.__dashboard.seqs).length >= n, n, {
        timeout: remaining(),
        polling: 100,
      });
      process.stdout.write(`${JSON.stringify({ phase: "seen", streams: n })}\n`);
      continue;
    }
    if (command !== "killed") throw new Error(`unknown command ${command}`);
    step = "starting 4 more jobs";
    await page.click("#dash-more", { timeout: remaining() });
    step = `waiting for all ${n} jobs to finish`;
    await page.waitForFunction((n) => window.__dashboard.finished === n, n, { timeout: remaining(), polling: 100 });
    break;
  }
  await page.screenshot({ path: screenshot, fullPage: true, timeout: 5000 });
  const d = await dashboard();
  return { phase: "result", seqs: d.seqs, opens: d.opens, errors: d.errors, sources, page_errors: errors.pageErrors };
}

await runToEnd("dashboard.mjs", {
  run,
  fail,
  timeoutMs: TIMEOUT_MS,
  screenshot,
  step: () => step,
  page: () => page,
  pageErrors: errors.pageErrors,
  paneStates: async () => "(dashboard)",
  cleanup: () => script.cleanup(context),
});
