// Drives the demo page in headless Chromium through nginx while a front-end is killed.
//
//   node tests/clients/browser/failover.mjs BASE_URL SCREENSHOT.png [USER_DATA_DIR]
//
// BASE_URL is nginx in front of two front-ends. The script opens BASE_URL/, types a plain
// prompt, clicks Generate, and waits until viewers A, B and the flaky viewer show some
// text of the generation. Then it prints ONE line of JSON {"phase": "streaming", ...} and
// waits for the caller to write one line to stdin ("killed") once it has killed a
// front-end. It records how the panes looked at that moment, waits until all four panes
// are done (the page's EventSources reconnect by themselves, with Last-Event-ID), prints
// ONE line of JSON {"phase": "result", ...} and saves a full-page screenshot.
//
// Every change of a pane's state (open, reconnecting, done, ...) is recorded in the page
// itself, so the result says which panes lost their stream and came back.
//
// Uses playwright-core with Debian's /usr/bin/chromium-headless-shell (no browser
// download). Exits
// non-zero, with a message on stderr, on any failure or when the run takes over 60 s.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { generate, openDemoPage, paneStates, runToEnd, startScript, stdinLines } from "./common.mjs";

const TIMEOUT_MS = 60_000;
const PANES = ["a", "b", "late", "flaky"];
const LIVE_PANES = ["a", "b", "flaky"]; // connected at once; "late" joins 3 s later
const PROMPT = "Tell the story of a stream that survived the loss of its server.";
// Text each live pane must show before the caller is told to kill: the echoed prompt and
// a few words more, so that the kill lands well inside the generation.
const TEXT_BEFORE_KILL = "You said: ".length + PROMPT.length + 1 + 20;

const { base, screenshot, openContext, fail, started, remaining, ...script } = await startScript(
  "failover.mjs",
  TIMEOUT_MS,
);
let step = "starting";

const nextLine = stdinLines();

let context = null;
let page = null;
const pageErrors = [];
const consoleErrors = [];
const httpErrors = [];


// What every pane shows right now.
const readPanes = (names) => {
  const panes = {};
  for (const n of names) {
    const s = document.querySelector(`section.pane[data-pane="${n}"]`);
    panes[n] = {
      state: s.getAttribute("data-state"),
      text: s.querySelector(".text").textContent,
      status: s.querySelector(".status").textContent,
      last_id: s.querySelector(".last-id").textContent,
      notice: s.querySelector(".notice").textContent,
    };
  }
  return panes;
};

async function cleanup() {
  const ctx = context;
  context = null;
  await script.cleanup(ctx);
}

async function run() {
  step = `opening Chromium on ${base}/`;
  ({ context, page } = await openDemoPage(openContext, base, remaining, {
    pageErrors,
    consoleErrors,
    httpErrors,
  }));

  step = "recording the panes' state changes";
  await page.evaluate((names) => {
    window.__transitions = {};
    for (const n of names) {
      const s = document.querySelector(`section.pane[data-pane="${n}"]`);
      const log = (window.__transitions[n] = []);
      new MutationObserver(() => {
        const state = s.getAttribute("data-state");
        if (log[log.length - 1]?.state !== state) {
          log.push({ state, last_id: s.querySelector(".last-id").textContent, t: Math.round(performance.now()) });
        }
      }).observe(s, { attributes: true, attributeFilter: ["data-state"] });
    }
  }, PANES);

  const generationId = await generate(page, PROMPT, remaining, (s) => (step = s));

  step = `waiting until panes ${LIVE_PANES.join(", ")} show ${TEXT_BEFORE_KILL} characters`;
  await page.waitForFunction(
    ([names, min]) =>
      names.every((n) => document.querySelector(`section.pane[data-pane="${n}"] .text`).textContent.length >= min),
    [LIVE_PANES, TEXT_BEFORE_KILL],
    { timeout: remaining(), polling: 20 },
  );
  const beforeKill = await page.evaluate(readPanes, PANES);
  process.stdout.write(
    JSON.stringify({ phase: "streaming", generation_id: generationId, panes: beforeKill }) + "\n",
  );

  step = "waiting for the caller to kill a front-end";
  const line = await Promise.race([
    nextLine(),
    new Promise((resolve) => setTimeout(() => resolve(null), Math.min(remaining(), 20_000))),
  ]);
  if (line === null) throw new Error("no word from the caller on stdin within 20 s");
  if (line.trim() !== "killed") throw new Error(`unexpected line on stdin: ${JSON.stringify(line)}`);
  const atKill = await page.evaluate(readPanes, PANES);

  step = "waiting until all four panes are done";
  await page.waitForFunction(
    (names) =>
      names.every((n) => {
        const s = document.querySelector(`section.pane[data-pane="${n}"]`);
        return s.getAttribute("data-state") === "done" || s.getAttribute("data-state") === "closed";
      }),
    PANES,
    { timeout: remaining(), polling: 100 },
  );

  step = "reading the panes";
  const panes = await page.evaluate(readPanes, PANES);
  const transitions = await page.evaluate(() => window.__transitions);
  const generationStatus = await page.textContent("#generation-status");

  step = "taking the screenshot";
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true, timeout: remaining() });

  return {
    phase: "result",
    ok: true,
    base_url: base,
    prompt: PROMPT,
    generation_id: generationId,
    before_kill: beforeKill,
    at_kill: atKill,
    panes,
    transitions,
    generation_status: generationStatus,
    page_errors: pageErrors,
    console_errors: consoleErrors,
    http_errors: httpErrors,
    screenshot,
    elapsed_ms: Date.now() - started,
  };
}

await runToEnd("failover.mjs", {
  run,
  cleanup,
  paneStates: () => paneStates(page, PANES),
  pageErrors,
  screenshot,
  fail,
  timeoutMs: TIMEOUT_MS,
  step: () => step,
  page: () => page,
});
