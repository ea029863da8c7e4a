// CopilotKit's React chat (examples/copilotkit, bundled) in Debian's Chromium, its runtime
// the broadcaster's /v1/agui: a message sent, the answer streamed, the page reloaded
// mid-answer and the answer resumed (driven by tests/clients/test_copilotkit.py).
//
//   node copilotkit.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR THREAD PROMPT FIRST LAST
//
// The example's files are served at BASE_URL/copilotkit/ (same origin as /v1/agui) by the
// browser itself (copilotkit_page.mjs). Once the answer's FIRST word shows, the page is
// reloaded; once it shows again after the reload (the thread's history and the answer so
// far, from `connect`), the script prints "RELOADED" and waits for LAST. It prints one
// JSON line: how often the prompt and the answer show, the text, and the /v1/agui requests.

import { runToEnd, startScript } from "./common.mjs";
import { bodyText, count, newTab, openBrowser, openThread, send, settle, waitForText } from "./copilotkit_page.mjs";

const NAME = "copilotkit.mjs";
const s = await startScript(NAME, 90_000);
const [thread, prompt, first, last] = process.argv.slice(5);
if (!last) s.fail("usage: node copilotkit.mjs BASE SHOT DIR THREAD PROMPT FIRST LAST", 64);

let step = "starting Chromium";
let context;
let page;
const log = { requests: [], pageErrors: [] };

async function run() {
  context = await openBrowser(s);
  page = await newTab(context, log, true);
  step = "opening the page";
  await openThread(page, s, thread);
  step = "sending the message";
  await send(page, s, prompt);
  step = "waiting for the answer's first words";
  await waitForText(page, s, first);
  step = "reloading mid-answer";
  await page.reload({ waitUntil: "load", timeout: s.remaining() });
  step = "waiting for the thread's history after the reload";
  await waitForText(page, s, prompt);
  step = "waiting for the answer so far after the reload";
  await waitForText(page, s, first);
  process.stdout.write("RELOADED\n");
  step = "waiting for the rest of the answer";
  await waitForText(page, s, last);
  step = "reading the page";
  await settle(page);
  const text = await bodyText(page);
  await page.screenshot({ path: s.screenshot, fullPage: true });
  return { prompts: count(text, prompt), firsts: count(text, first), lasts: count(text, last),
           text, requests: log.requests, pageErrors: log.pageErrors };  // prettier-ignore
}

await runToEnd(NAME, {
  ...s,
  timeoutMs: 90_000,
  run,
  step: () => step,
  page: () => page,
  pageErrors: log.pageErrors,
  paneStates: async () => "(no panes)",
  cleanup: () => s.cleanup(context),
});
