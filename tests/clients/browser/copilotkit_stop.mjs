// CopilotKit's own stop control on a running answer (examples/copilotkit, driven by
// tests/clients/test_copilotkit.py): a message sent; once the answer's FIRST word shows,
// the chat's send button, a stop button while the answer runs, is pressed (CopilotKit
// posts /v1/agui/agent/{agentId}/stop/{threadId}). Once the chat has stopped running (the
// button is a send button again), the script prints one JSON line {"phase": "stopped",
// "generation", "stopStatus", "text"} and waits for a line on stdin ("go", once the
// caller has seen the generation end); then it sends PROMPT2 in the same thread, waits for
// ANSWER2 and prints one JSON line {"phase": "result", ...}: how often each text shows,
// the page's text, its /v1/agui requests and its errors.
//
//   node copilotkit_stop.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR THREAD PROMPT FIRST PROMPT2 ANSWER2

import { runToEnd, startScript, stdinLines } from "./common.mjs";
import { bodyText, count, newTab, openBrowser, openThread, send, settle, waitForText } from "./copilotkit_page.mjs";

const NAME = "copilotkit_stop.mjs";
const s = await startScript(NAME, 120_000);
const [thread, prompt, first, prompt2, answer2] = process.argv.slice(5);
if (!answer2) s.fail("usage: node copilotkit_stop.mjs BASE SHOT DIR THREAD PROMPT FIRST PROMPT2 ANSWER2", 64);
const nextLine = stdinLines();
const BUTTON = '[data-testid="copilot-send-button"]';

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
  const ran = await send(page, s, prompt);
  const generation = ran.headers()["x-generation-id"];
  step = "waiting for the answer's first words";
  await waitForText(page, s, first);
  step = "pressing the stop button";
  const button = page.locator(BUTTON);
  // Running, the input empty: the button is enabled only as the stop button.
  await page.locator(`${BUTTON}:enabled`).waitFor({ timeout: s.remaining() });
  const stopped = page.waitForResponse((r) => r.url().includes("/stop/"), { timeout: s.remaining() });
  await button.click({ timeout: s.remaining() });
  const stopStatus = (await stopped).status();
  step = "waiting for the chat to stop running";
  await page.locator(`${BUTTON}:disabled`).waitFor({ timeout: s.remaining() });
  const text = await bodyText(page);
  process.stdout.write(JSON.stringify({ phase: "stopped", generation, stopStatus, text }) + "\n");
  step = "waiting for the caller's go";
  await nextLine();
  step = "sending the next message";
  await send(page, s, prompt2);
  step = "waiting for the next answer";
  await waitForText(page, s, answer2);
  await page.locator(`${BUTTON}:disabled`).waitFor({ timeout: s.remaining() });
  step = "reading the page";
  await settle(page);
  const after = await bodyText(page);
  await page.screenshot({ path: s.screenshot, fullPage: true });
  return { phase: "result", prompts: count(after, prompt), firsts: count(after, first),
           prompts2: count(after, prompt2), answers2: count(after, answer2), text: after,
           ...log };  // prettier-ignore
}

await runToEnd(NAME, {
  ...s,
  timeoutMs: 120_000,
  run,
  step: () => step,
  page: () => page,
  pageErrors: log.pageErrors,
  paneStates: async () => "(no panes)",
  cleanup: () => s.cleanup(context),
});
