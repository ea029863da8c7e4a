// Drives the demo page's chat tab against an agent, in headless Chromium: the page opened
// as BASE_URL/?provider=AGENT#chat, so every submit names the agent as its `provider`.
//
//   node tests/clients/browser/agent_chat.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR AGENT
//
// The agent (tests/support/agents.py's `helper`, a pydantic-ai Agent) answers "slow" in
// 60 words a tenth of a second apart, runs its `weather` tool when asked, and asks a
// person before its `delete`. On the one chat both panes of tab 1 show:
//   1. pane 1 sends a slow message; the page is reloaded mid-answer; both panes resume it;
//   2. pane 2 asks for the weather: the agent's tool runs, both panes show its output;
//   3. pane 1 sends a slow message and pane 2's Stop ends it mid-answer;
//   4. pane 1 sends a slow message and, once both panes show part of it, the script
//      prints KILL: the caller kills the worker (SIGKILL) and starts another, which takes
//      the answer over; both panes end with it;
//   5. pane 2 asks for a delete: both panes show Approve; a second tab opened on the chat
//      shows it too and approves; every pane of both tabs shows the tool's output and the
//      rest of the answer.
// Prints ONE line of JSON with what every pane showed after each step. Exits non-zero,
// with a message on stderr, on failure or when the run takes longer than 110 s.

import { openDemoPage, runToEnd, startScript } from "./common.mjs";

const TIMEOUT_MS = 110_000;
const agent = process.argv[5];
if (!agent) {
  process.stderr.write("usage: node agent_chat.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR AGENT\n");
  process.exit(64);
}
const { base, screenshot, userDataDir, chromium, fail, remaining, ...script } = await startScript(
  "agent_chat.mjs",
  TIMEOUT_MS,
);
let step = "starting";
let context = null;
const tabs = [];
const errors = { pageErrors: [], consoleErrors: [], httpErrors: [] };
const posts = []; // every POST /v1/chat: its tab and the provider its body named

function readPanes(page) {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll("#chat-tab section.chat-pane"), (s) => ({
      status: s.dataset.status || "",
      outcome: s.querySelector(".outcome").dataset.kind || "",
      error: s.querySelector(".pane-error").textContent,
      messages: Array.from(s.querySelectorAll(".msg"), (m) => ({
        role: m.dataset.role,
        text: Array.from(m.querySelectorAll(".part-text"), (t) => t.textContent).join(""),
        retry: m.querySelector(".retry-note")?.textContent ?? null,
        tools: Array.from(m.querySelectorAll(".tool"), (t) => ({
          name: t.dataset.toolName,
          state: t.dataset.toolState,
          output: t.querySelector(".tool-output")?.textContent ?? null,
        })),
      })),
    })),
  );
}

// Every pane of `page` idle with `count` messages, the last answer ended by `outcome`.
function turnEnded(page, count, outcome) {
  return page.waitForFunction(
    ({ count, outcome }) =>
      Array.from(document.querySelectorAll("#chat-tab section.chat-pane")).every(
        (s) =>
          s.dataset.status === "ready" &&
          s.dataset.following !== "true" &&
          s.querySelectorAll(".msg").length === count &&
          (s.querySelector(".outcome").dataset.kind || "") === outcome,
      ),
    { count, outcome },
    { timeout: remaining(), polling: 100 },
  );
}

// Every pane of `page` shows some of answer number `count / 2`, still streaming.
function answerShown(page, count) {
  return page.waitForFunction(
    (count) =>
      Array.from(document.querySelectorAll("#chat-tab section.chat-pane")).every((s) => {
        const msgs = s.querySelectorAll(".msg");
        const last = msgs[msgs.length - 1];
        return (
          msgs.length === count &&
          last.dataset.role === "assistant" &&
          last.querySelector(".part-text")?.textContent.length > 0 &&
          s.dataset.status === "streaming"
        );
      }),
    count,
    { timeout: remaining(), polling: 50 },
  );
}

// Every pane of `page` offers Approve on answer number `count / 2`.
function approvalShown(page, count) {
  return page.waitForFunction(
    (count) =>
      Array.from(document.querySelectorAll("#chat-tab section.chat-pane")).every(
        (s) => s.querySelectorAll(".msg").length === count && s.querySelector(".tool-approval button.approve"),
      ),
    count,
    { timeout: remaining(), polling: 100 },
  );
}

function pane(page, index) {
  return page.locator("#chat-tab section.chat-pane").nth(index);
}

async function send(page, index, text) {
  await pane(page, index).locator("input.chat-input").fill(text, { timeout: remaining() });
  await pane(page, index).locator("button.send").click({ timeout: remaining() });
}

function watch(page, tab) {
  page.on("pageerror", (err) => errors.pageErrors.push(`tab ${tab}: ${err.message || err}`));
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname === "/v1/chat") {
      posts.push({ tab, provider: JSON.parse(r.postData() || "{}").provider ?? null });
    }
  });
}

async function run() {
  const out = {};
  step = "opening the page on the agent";
  let page;
  ({ context, page } = await openDemoPage(chromium, base, userDataDir, remaining, errors, `/?provider=${agent}#chat`));
  tabs.push(page);
  watch(page, 1);
  await page.waitForFunction(() => document.querySelector("#chat-id").textContent !== "—", null, {
    timeout: remaining(),
  });
  out.chat_id = (await page.textContent("#chat-id")).trim();

  step = "1: a slow answer, the page reloaded mid-way";
  await send(page, 0, "slow: the first answer");
  await answerShown(page, 2);
  out.before_reload = await readPanes(page);
  await page.reload({ waitUntil: "load", timeout: remaining() });
  await turnEnded(page, 2, "finish");
  out.first = await readPanes(page);

  step = "2: the agent's tool";
  await send(page, 1, "the weather, please");
  await turnEnded(page, 4, "finish");
  out.tool = await readPanes(page);

  step = "3: a slow answer stopped mid-way";
  await send(page, 0, "slow: to be stopped");
  await answerShown(page, 6);
  await pane(page, 1).locator("button.stop").click({ timeout: remaining() });
  await turnEnded(page, 6, "abort");
  out.stopped = await readPanes(page);

  step = "4: a slow answer whose worker dies";
  await send(page, 0, "slow: the worker dies");
  await answerShown(page, 8);
  process.stdout.write("KILL\n");
  await turnEnded(page, 8, "finish");
  out.takeover = await readPanes(page);

  step = "5: a delete the second tab approves";
  await send(page, 1, "delete the file");
  await approvalShown(page, 10);
  const second = await context.newPage();
  watch(second, 2);
  tabs.push(second);
  await second.goto(`${base}/?provider=${agent}#chat=${out.chat_id}`, { waitUntil: "load", timeout: remaining() });
  await approvalShown(second, 10);
  out.asked = [await readPanes(page), await readPanes(second)];
  await pane(second, 0).locator("button.approve").click({ timeout: remaining() });
  await turnEnded(second, 10, "finish");
  await turnEnded(page, 10, "finish");
  out.approved = [await readPanes(page), await readPanes(second)];

  step = "reading the page";
  for (const [i, p] of tabs.entries()) {
    await p.screenshot({ path: screenshot.replace(/(\.png)?$/i, `-${i + 1}.png`), fullPage: true });
  }
  return { ...out, posts, ...errors };
}

await runToEnd("agent_chat.mjs", {
  timeoutMs: TIMEOUT_MS,
  run,
  step: () => step,
  page: () => tabs[tabs.length - 1] ?? null,
  paneStates: async () =>
    JSON.stringify(await Promise.all(tabs.map((p) => readPanes(p).catch(() => "(unavailable)")))),
  pageErrors: errors.pageErrors,
  screenshot,
  fail,
  cleanup: async () => {
    const ctx = context;
    context = null;
    await script.cleanup(ctx);
  },
});
