// An approval in CopilotKit's chat (examples/copilotkit, driven by
// tests/clients/test_copilotkit.py): a message sent whose answer calls a tool that waits
// for a person, so the run ends with an AG-UI interrupt, which the example shows with
// CopilotKit's `useInterrupt` (Approve / Deny). Once the buttons show, the script prints
// one JSON line {"phase": "asked", "generation", "text"} and waits for a line on stdin
// ("go"); then it presses BUTTON (`approve` or `deny`: CopilotKit sends the next run with
// `resume`), waits for ANSWER and for the chat to stop running, and prints one JSON line
// {"phase": "result", ...}: how often the prompt and the answer show, whether the
// approval is still shown, the page's text, the runs' `resume` fields, its /v1/agui
// requests and its errors.
//
//   node copilotkit_approval.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR THREAD PROMPT ANSWER BUTTON

import { runToEnd, startScript, stdinLines } from "./common.mjs";
import { bodyText, count, newTab, openBrowser, openThread, send, settle, waitForText } from "./copilotkit_page.mjs";

const NAME = "copilotkit_approval.mjs";
const s = await startScript(NAME, 120_000);
const [thread, prompt, answer, decide] = process.argv.slice(5);
if (!["approve", "deny"].includes(decide)) {
  s.fail("usage: node copilotkit_approval.mjs BASE SHOT DIR THREAD PROMPT ANSWER approve|deny", 64);
}
const nextLine = stdinLines();
const BUTTON = '[data-testid="copilot-send-button"]';

let step = "starting Chromium";
let context;
let page;
const log = { requests: [], pageErrors: [] };
const runs = [];

async function run() {
  context = await openBrowser(s);
  page = await newTab(context, log, true);
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/run")) {
      runs.push({ resume: JSON.parse(r.postData() || "{}").resume ?? null });
    }
  });
  step = "opening the page";
  await openThread(page, s, thread);
  step = "sending the message";
  const ran = await send(page, s, prompt);
  step = "waiting for the approval";
  await page.locator(`[data-testid="${decide}"]`).waitFor({ timeout: s.remaining() });
  const generation = ran.headers()["x-generation-id"];
  process.stdout.write(JSON.stringify({ phase: "asked", generation, text: await bodyText(page) }) + "\n");
  step = "waiting for the caller's go";
  await nextLine();
  step = `pressing ${decide}`;
  await page.locator(`[data-testid="${decide}"]`).click({ timeout: s.remaining() });
  step = "waiting for the answer after the decision";
  await waitForText(page, s, answer);
  await page.locator(`${BUTTON}:disabled`).waitFor({ timeout: s.remaining() });
  step = "reading the page";
  await settle(page);
  const text = await bodyText(page);
  const approvals = await page.locator('[data-testid="approval"]').count();
  await page.screenshot({ path: s.screenshot, fullPage: true });
  return { phase: "result", prompts: count(text, prompt), answers: count(text, answer), approvals,
           text, runs, ...log };  // prettier-ignore
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
