// Drives the demo page in headless Chromium, the way a person would use it.
//
//   node tests/clients/browser/demo.mjs BASE_URL SCREENSHOT.png [USER_DATA_DIR]
//
// Opens BASE_URL/, types a prompt full of HTML markup, clicks Generate, drops the flaky
// viewer's connection once its first text has arrived, and waits until all four panes
// are done. Then it prints ONE line of JSON (what each pane shows, whether any markup was
// executed or turned into elements) and saves a full-page screenshot.
//
// Uses playwright-core with the test process's shared Chromium, or run by hand, Debian's
// headless shell, /usr/bin/chromium-headless-shell (no browser download) with its profile in USER_DATA_DIR if given (the
// caller owns it), else in a fresh temporary folder that is removed at the end. Exits non-zero, with a message on stderr, on any failure or
// when the whole run takes longer than 60 s.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { generate, openDemoPage, paneStates, runToEnd, startScript } from "./common.mjs";

const TIMEOUT_MS = 60_000;
const PANES = ["a", "b", "late", "flaky"];
const PROMPT =
  'Echo this: <script>window.__xss=1</script> and <img src=x onerror="window.__xss=2"> & "quotes" <b>bold?</b> ✓';

const { base, screenshot, openContext, fail, started, remaining, ...script } = await startScript(
  "demo.mjs",
  TIMEOUT_MS,
);
let step = "starting";

let context = null;
let page = null;
const pageErrors = [];
const consoleErrors = [];
const httpErrors = [];


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

  const generationId = await generate(page, PROMPT, remaining, (s) => (step = s));

  step = "waiting for the flaky pane's first text";
  const flaky = 'section.pane[data-pane="flaky"]';
  await page.waitForFunction((sel) => document.querySelector(`${sel} .text`).textContent.length > 0, flaky, {
    timeout: remaining(),
    polling: 100,
  });

  step = "clicking #drop on the flaky pane";
  await page.click("#drop", { timeout: Math.min(remaining(), 5000) });
  const dropped = await page.evaluate((sel) => {
    const s = document.querySelector(sel);
    return {
      state: s.getAttribute("data-state"),
      last_id: s.querySelector(".last-id").textContent,
      text_length: s.querySelector(".text").textContent.length,
    };
  }, flaky);
  if (dropped.state !== "dropped") throw new Error(`after #drop the flaky pane is ${dropped.state}, not dropped`);

  step = "waiting until all four panes are done";
  await page.waitForFunction(
    (names) =>
      names.every((n) => {
        const s = document.querySelector(`section.pane[data-pane="${n}"]`);
        return s.getAttribute("data-state") === "done" || s.querySelector(".state").textContent === "done";
      }),
    PANES,
    { timeout: remaining(), polling: 100 },
  );

  step = "reading the panes";
  const result = await page.evaluate((names) => {
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
    return {
      panes,
      xss_type: typeof window.__xss,
      xss: window.__xss === undefined ? null : String(window.__xss),
      injected: {
        img: document.querySelectorAll(".pane .text img").length,
        script: document.querySelectorAll(".pane .text script").length,
        any_element_besides_blocks: document.querySelectorAll(".pane .text *:not(span.block)").length,
        img_in_document: document.images.length,
      },
      generation_status: document.querySelector("#generation-status").textContent,
    };
  }, PANES);

  step = "taking the screenshot";
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true, timeout: remaining() });

  return {
    ok: true,
    base_url: base,
    prompt: PROMPT,
    generation_id: generationId,
    flaky_dropped: dropped,
    ...result,
    page_errors: pageErrors,
    console_errors: consoleErrors,
    http_errors: httpErrors,
    screenshot,
    elapsed_ms: Date.now() - started,
  };
}

await runToEnd("demo.mjs", {
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
