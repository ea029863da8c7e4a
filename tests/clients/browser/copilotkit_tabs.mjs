// Two tabs of one browser on one CopilotKit thread (examples/copilotkit, driven by
// tests/clients/test_copilotkit.py): tab 1 sends a message; once the answer's FIRST
// word shows there, tab 2 (a second page of the same browser context) opens the same
// thread, which it joins through `connect` (the thread's history, then the running
// answer). Once tab 2 shows the prompt and FIRST, the script prints one JSON line
// {"phase": "joined", ...} (tab 2's text then) and waits for a line on stdin ("go", once
// the caller has let the answer go on); then for LAST in both tabs, and prints one JSON
// line {"phase": "result", "tabs": [...]}: per tab, how often the prompt and the answer's
// words show, its text, its /v1/agui requests and its errors.
//
//   node copilotkit_tabs.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR THREAD PROMPT FIRST LAST

import { runToEnd, startScript, stdinLines } from "./common.mjs";
import { bodyText, count, newTab, openBrowser, openThread, send, settle, waitForText } from "./copilotkit_page.mjs";

const NAME = "copilotkit_tabs.mjs";
const s = await startScript(NAME, 120_000);
const [thread, prompt, first, last] = process.argv.slice(5);
if (!last) s.fail("usage: node copilotkit_tabs.mjs BASE SHOT DIR THREAD PROMPT FIRST LAST", 64);
const nextLine = stdinLines();

let step = "starting Chromium";
let context;
let page;
const logs = [
  { requests: [], pageErrors: [] },
  { requests: [], pageErrors: [] },
];
const pageErrors = [];

async function run() {
  context = await openBrowser(s);
  const one = await newTab(context, logs[0], true);
  page = one;
  step = "opening tab 1";
  await openThread(one, s, thread);
  step = "sending the message in tab 1";
  await send(one, s, prompt);
  step = "waiting for the answer's first words in tab 1";
  await waitForText(one, s, first);
  step = "opening tab 2 on the same thread";
  const two = await newTab(context, logs[1]);
  page = two;
  await openThread(two, s, thread);
  step = "waiting for the thread's history in tab 2";
  await waitForText(two, s, prompt);
  step = "waiting for the answer so far in tab 2";
  await waitForText(two, s, first);
  process.stdout.write(JSON.stringify({ phase: "joined", text: await bodyText(two) }) + "\n");
  step = "waiting for the caller's go";
  await nextLine();
  step = "waiting for the rest of the answer in tab 2";
  await waitForText(two, s, last);
  step = "waiting for the rest of the answer in tab 1";
  page = one;
  await waitForText(one, s, last);
  step = "reading the tabs";
  await settle(one);
  const tabs = [];
  for (const [i, tab] of [one, two].entries()) {
    const text = await bodyText(tab);
    tabs.push({ prompts: count(text, prompt), firsts: count(text, first), lasts: count(text, last),
                text, ...logs[i] });  // prettier-ignore
  }
  await two.screenshot({ path: s.screenshot, fullPage: true });
  return { phase: "result", tabs };
}

await runToEnd(NAME, {
  ...s,
  timeoutMs: 120_000,
  run,
  step: () => step,
  page: () => page,
  pageErrors,
  paneStates: async () => `(tab errors: ${JSON.stringify(logs.map((l) => l.pageErrors))})`,
  cleanup: () => s.cleanup(context),
});
