// A browser's EventSource against a front-end that is full when it first connects.
//
//   node tests/clients/browser/busy.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR STREAM_ID
//
// Opens BASE_URL/healthz (a page of the front-end's origin) and, in it, an EventSource on
// /v1/streams/STREAM_ID/events. The caller holds the front-end's only connection, so the
// first attempts are refused. Once the EventSource has been refused (an `error` with no
// event), the script prints ONE line of JSON {"phase": "refused", ...} and waits for the
// caller to write one line to stdin ("go") once it has let the connection go and
// published the stream's events. Then it waits for the stream's `finish` and prints ONE
// line of JSON {"phase": "result", ...}: every event's type and id, the EventSource's
// states, and the requests Chromium made for the stream with their statuses.
//
// Uses playwright-core with Debian's /usr/bin/chromium-headless-shell. Exits non-zero, with a message on
// stderr, on any failure or when the run takes over 60 s.

import { openDemoPage, runToEnd, startScript, stdinLines } from "./common.mjs";

const TIMEOUT_MS = 60_000;
const script = await startScript("busy.mjs", TIMEOUT_MS);
const stream = process.argv[5];
if (!stream) script.fail("usage: node busy.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR STREAM_ID", 64);

const nextLine = stdinLines();

let context = null;
let page = null;
let step = "starting";
const errors = { pageErrors: [], consoleErrors: [], httpErrors: [] };
const requests = [];

async function run() {
  step = `opening ${script.base}/healthz`;
  ({ context, page } = await openDemoPage(
    script.openContext,
    script.base,
    script.remaining,
    errors,
    "/healthz",
  ));
  const path = `/v1/streams/${stream}/events`;
  page.on("request", (r) => {
    if (r.url().includes(path)) {
      requests.push({ type: r.resourceType(), lastEventId: r.headers()["last-event-id"] || null });
    }
  });
  page.on("response", (r) => {
    if (r.url().includes(path)) {
      const at = requests.findLastIndex((q) => q.status === undefined);
      if (at >= 0) Object.assign(requests[at], { status: r.status(), type: r.headers()["content-type"] });
    }
  });
  step = "opening the EventSource";
  await page.evaluate((url) => {
    const got = { events: [], opens: 0, errors: [], done: false };
    window.got = got;
    const es = new EventSource(url);
    window.es = es;
    es.onopen = () => (got.opens += 1);
    es.onerror = () => got.errors.push({ readyState: es.readyState, events: got.events.length });
    for (const type of ["data-step", "finish"]) {
      es.addEventListener(type, (e) => {
        got.events.push({ type, id: e.lastEventId });
        if (type === "finish") {
          got.done = true;
          es.close();
        }
      });
    }
  }, path);
  step = "waiting for the EventSource to be refused";
  await page.waitForFunction(() => window.got.errors.length >= 1, null, { timeout: script.remaining(), polling: 100 });
  const refused = await page.evaluate(() => ({ ...window.got, readyState: window.es.readyState }));
  process.stdout.write(JSON.stringify({ phase: "refused", ...refused, requests }) + "\n");
  step = "waiting for the caller to let the connection go";
  await nextLine();
  step = "waiting for the stream's finish";
  await page.waitForFunction(() => window.got.done, null, { timeout: script.remaining(), polling: 100 });
  const got = await page.evaluate(() => ({ ...window.got, readyState: window.es.readyState }));
  await page.screenshot({ path: script.screenshot, timeout: 5000 }).catch(() => {});
  return { phase: "result", ...got, requests, pageErrors: errors.pageErrors };
}

await runToEnd("busy.mjs", {
  run,
  timeoutMs: TIMEOUT_MS,
  step: () => step,
  fail: script.fail,
  page: () => page,
  paneStates: async () => "(no panes)",
  pageErrors: errors.pageErrors,
  screenshot: script.screenshot,
  cleanup: () => script.cleanup(context),
});
