// Drives the demo page's chat tab in headless Chromium, the way a person would.
//
//   node tests/clients/browser/chat.mjs BASE_URL SCREENSHOT.png [USER_DATA_DIR]
//
// Opens BASE_URL/#chat and plays three turns on the one chat both panes show:
//   1. pane 1 sends a message; once both panes show part of the answer, the page is
//      reloaded, and both panes must resume the answer and finish it;
//   2. pane 2 asks for the worker's tool (the page's own suggestion);
//   3. pane 1 sends a message and, mid-answer, pane 2's Stop ends it;
//   4. pane 1 sends a message and waits for the answer to end: meanwhile the caller kills
//      the worker (it polls the chat's messages to see the answer begin) and starts
//      another, which takes the answer over and continues it in the same part;
//   5. pane 2 asks for count_words, a tool that waits for a person: both panes show
//      Approve and Deny; pane 2 (whose answer ended at the wait) approves, and both panes
//      show the tool's output and the rest of the answer;
//   6. the list of chats beside the panes shows this chat, finished;
//   7. "New chat" gives both panes a new, empty chat.
// With BROWSER_CHAT_API_KEY set, it first types that key into the page (a deployment with
// access control). After each turn it records what every pane shows. It prints ONE line of JSON and saves
// a full-page screenshot (and one of the answer resumed after the reload, next to it).
//
// Uses playwright-core with Debian's /usr/bin/chromium-headless-shell. Exits non-zero, with a message on
// stderr, on any failure or when the whole run takes longer than 100 s.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { answerShown, readPanes as panesOf, turnEnded } from "./chat_panes.mjs";
import { openDemoPage, runToEnd, startScript } from "./common.mjs";

const TIMEOUT_MS = 100_000;
// On a deployment with access control: the API key typed into the page, which mints a
// chat token with it.
const API_KEY = process.env.BROWSER_CHAT_API_KEY || "";
const FIRST = "Tell me how a reload resumes this answer, <b>both</b> panes & all.";
const THIRD = "Now a long answer, to be stopped halfway.";
const FOURTH = "And one during which the worker dies.";
const FIFTH = "count_words: a person approves this first";

const { base, screenshot, openContext, fail, started, remaining, ...script } = await startScript(
  "chat.mjs",
  TIMEOUT_MS,
);
let step = "starting";

let context = null;
let page = null;
const pageErrors = [];
const consoleErrors = [];
const httpErrors = [];
const chatRequests = []; // every response of the chat API, in order, with the page's phase
let phase = "load";

async function cleanup() {
  const ctx = context;
  context = null;
  await script.cleanup(ctx);
}

const readPanes = () => panesOf(page);
const waitForTurnEnd = (count, outcome) => turnEnded(page, count, outcome, remaining());
const waitForPartialAnswers = (count) => answerShown(page, count, remaining());

async function paneStates() {
  if (!page) return "(no page)";
  try {
    const panes = await Promise.race([readPanes(), new Promise((r) => setTimeout(() => r(null), 3000))]);
    if (!panes) return "(page did not answer)";
    return panes
      .map((p, i) => `pane ${i + 1}=${p.status}/${p.outcome || "-"} (${p.messages.length} messages${p.error ? `, error: ${p.error}` : ""})`)
      .join(" ");
  } catch (err) {
    return `(unavailable: ${err.message.split("\n")[0]})`;
  }
}

async function send(paneIndex, text) {
  const pane = page.locator("#chat-tab section.chat-pane").nth(paneIndex);
  if (text !== null) await pane.locator("input.chat-input").fill(text, { timeout: remaining() });
  await pane.locator("button.send").click({ timeout: remaining() });
}

async function run() {
  step = `opening Chromium on ${base}/#chat`;
  ({ context, page } = await openDemoPage(
    openContext,
    base,
    remaining,
    { pageErrors, consoleErrors, httpErrors },
    "/#chat",
  ));
  page.on("response", (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith("/v1/chat")) {
      const generation = r.headers()["x-generation-id"] || null;
      chatRequests.push({ phase, method: r.request().method(), path, status: r.status(), generation });
    }
  });

  step = "waiting for the chat tab (both panes ready)";
  await page.waitForFunction(
    () => {
      const id = document.querySelector("#chat-id").textContent;
      const panes = document.querySelectorAll("#chat-tab section.chat-pane");
      return (
        !document.querySelector("#chat-tab").hidden &&
        id !== "—" &&
        panes.length === 2 &&
        Array.from(panes).every((s) => s.dataset.status === "ready" && s.dataset.following !== "true")
      );
    },
    null,
    { timeout: remaining(), polling: 100 },
  );
  const chatId = (await page.textContent("#chat-id")).trim();
  const address = page.url();
  if (API_KEY) await page.fill("#chat-api-key", API_KEY, { timeout: remaining() });

  // 1. A message, a reload mid-answer, and the answer resumed in both panes.
  step = "sending the first message from pane 1";
  phase = "first";
  await send(0, FIRST);
  step = "waiting until both panes show part of the first answer";
  await waitForPartialAnswers(2);
  const beforeReload = await readPanes();
  step = "reloading the page mid-answer";
  phase = "reloaded";
  await page.reload({ waitUntil: "load", timeout: remaining() });
  step = "waiting until both panes resume the first answer";
  await waitForPartialAnswers(2);
  const resumed = await readPanes();
  const resumedShot = screenshot.replace(/(\.png)?$/i, ".resumed.png");
  await page.screenshot({ path: resumedShot, fullPage: true, timeout: remaining() });
  step = "waiting until both panes finish the first answer";
  await waitForTurnEnd(2, "finish");
  const first = await readPanes();

  // 2. The worker's tool, asked for from pane 2.
  step = "asking for the worker's tool from pane 2";
  phase = "tool";
  const suggestion = await page.getAttribute("button[data-suggest]", "data-suggest");
  await page.click("button[data-suggest]", { timeout: remaining() });
  const suggested = await page.locator("#chat-tab section.chat-pane").nth(0).locator("input.chat-input").inputValue();
  await send(1, suggested);
  step = "waiting until both panes finish the tool turn";
  await waitForTurnEnd(4, "finish");
  const tool = await readPanes();

  // 3. Stop mid-answer, from the other pane than the one that asked.
  step = "sending the third message from pane 1";
  phase = "stop";
  await send(0, THIRD);
  step = "waiting until both panes show part of the third answer";
  await waitForPartialAnswers(6);
  step = "clicking Stop in pane 2";
  await page.locator("#chat-tab section.chat-pane").nth(1).locator("button.stop").click({ timeout: remaining() });
  step = "waiting until both panes show the answer aborted";
  await waitForTurnEnd(6, "abort");
  const stopped = await readPanes();

  // 4. The worker dies mid-answer (the caller kills it); another takes the answer over.
  step = "sending the fourth message from pane 1";
  phase = "takeover";
  await send(0, FOURTH);
  step = "waiting until both panes finish the fourth answer (the caller kills the worker)";
  await waitForTurnEnd(8, "finish");
  const takeover = await readPanes();

  // 5. A tool that waits for a person: both panes offer the decision, pane 2 approves.
  step = "asking for count_words (it needs approval) from pane 2";
  phase = "approval";
  await send(1, FIFTH);
  step = "waiting until both panes show Approve";
  await page.waitForFunction(
    () =>
      Array.from(document.querySelectorAll("#chat-tab section.chat-pane")).every(
        (s) => s.querySelectorAll(".msg").length === 10 && s.querySelector(".tool-approval button.approve"),
      ),
    null,
    { timeout: remaining(), polling: 100 },
  );
  const asked = await readPanes();
  step = "clicking Approve in pane 2";
  await page.locator("#chat-tab section.chat-pane").nth(1).locator("button.approve").click({ timeout: remaining() });
  step = "waiting until both panes finish the approved turn";
  await waitForTurnEnd(10, "finish");
  const approved = await readPanes();

  // The list of chats beside the panes: this chat, its title, finished (kept live by
  // the chats' lifecycle feed, not by a reload).
  step = "waiting for the list of chats to show this chat finished";
  await page.waitForFunction(
    (id) => {
      const li = document.querySelector(`#chat-list li[data-chat="${id}"]`);
      return li && li.querySelector(".chat-list-status").dataset.status === "finished";
    },
    chatId,
    { timeout: remaining(), polling: 100 },
  );
  const chatList = await page.$$eval("#chat-list li", (lis) =>
    lis.map((li) => ({
      id: li.dataset.chat,
      title: li.querySelector("a").textContent,
      status: li.querySelector(".chat-list-status").dataset.status,
    })),
  );

  step = "taking the screenshot";
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true, timeout: remaining() });

  // 5. New chat: a fresh id in the address, both panes empty, nothing asked of the server.
  step = "clicking New chat";
  phase = "new chat";
  await page.click("#new-chat", { timeout: remaining() });
  await page.waitForFunction(
    (old) =>
      document.querySelector("#chat-id").textContent !== old &&
      Array.from(document.querySelectorAll("#chat-tab section.chat-pane")).every(
        (s) => s.dataset.status === "ready" && s.querySelectorAll(".msg").length === 0,
      ),
    chatId,
    { timeout: remaining(), polling: 100 },
  );
  const newChat = { chat_id: (await page.textContent("#chat-id")).trim(), address: page.url(), panes: await readPanes() };

  return {
    ok: true,
    base_url: base,
    address,
    chat_id: chatId,
    first_prompt: FIRST,
    third_prompt: THIRD,
    fourth_prompt: FOURTH,
    suggestion,
    suggested,
    before_reload: beforeReload,
    resumed,
    first,
    tool,
    stopped,
    takeover,
    fifth_prompt: FIFTH,
    asked,
    approved,
    new_chat: newChat,
    chat_list: chatList,
    chat_requests: chatRequests,
    page_errors: pageErrors,
    console_errors: consoleErrors,
    http_errors: httpErrors,
    screenshot,
    resumed_screenshot: resumedShot,
    elapsed_ms: Date.now() - started,
  };
}

await runToEnd("chat.mjs", {
  run,
  cleanup,
  paneStates,
  pageErrors,
  screenshot,
  fail,
  timeoutMs: TIMEOUT_MS,
  step: () => step,
  page: () => page,
});
