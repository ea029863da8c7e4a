// Drives the demo page's chat tab in two browser tabs on one chat, in headless Chromium.
//
//   node tests/clients/browser/tabs.mjs BASE_URL SCREENSHOT.png [USER_DATA_DIR]
//
// Tab 1 opens BASE_URL/#chat (a new chat); tab 2 opens the same chat's address. Nothing
// in one tab tells the other anything: only the chat's own stream
// (GET /v1/chat/{id}/events) can. Then:
//   1. tab 1's pane 1 sends a message: both panes of tab 2 must show it and its answer;
//   2. tab 2's pane 2 sends one: both panes of tab 1 must show it and its answer.
// Tab 2's first reads of the chat's messages are answered by the server at once but
// handed to the page only after tab 1 has sent (as on a loaded machine): the chat's stream
// then announces the turn while tab 2 still loads the chat, and tab 2 must follow it all
// the same.
// Prints ONE line of JSON: what each tab's panes show at the end, and every POST
// /v1/chat (its Idempotency-Key) and GET of the chat's messages (its query) the tabs made.
// Saves a screenshot of each tab. Exits non-zero, with a message on stderr, on failure
// or when the run takes longer than 100 s.

import { readPanes, sendInPane, turnEnded } from "./chat_panes.mjs";
import { openDemoPage, runToEnd, startScript } from "./common.mjs";

const TIMEOUT_MS = 100_000;
const { base, screenshot, openContext, fail, remaining, ...script } = await startScript(
  "tabs.mjs",
  TIMEOUT_MS,
);
let step = "starting";
let context = null;
const tabs = [];
const pageErrors = [];
const requests = [];
let posted;
const firstPost = new Promise((resolve) => (posted = resolve));

// Both panes of `page` idle with `count` messages, the last answer finished.
const waitForTurn = (page, count) => turnEnded(page, count, "finish", remaining());

function watch(page, tab) {
  page.on("pageerror", (err) => pageErrors.push(`tab ${tab}: ${err.message || err}`));
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (r.method() === "POST" && url.pathname === "/v1/chat") {
      posted();
      requests.push({ tab, method: "POST", idempotency_key: r.headers()["idempotency-key"] ?? null });
    } else if (/^\/v1\/chat\/[^/]+\/messages$/.test(url.pathname)) {
      requests.push({ tab, method: "GET", query: url.search });
    }
  });
}

async function run() {
  step = "opening tab 1";
  const errors = { pageErrors, consoleErrors: [], httpErrors: [] };
  let first;
  ({ context, page: first } = await openDemoPage(openContext, base, remaining, errors, "/#chat"));
  watch(first, 1);
  await first.waitForFunction(() => document.querySelector("#chat-id").textContent !== "—", null, {
    timeout: remaining(),
    polling: 100,
  });
  const chatId = (await first.textContent("#chat-id")).trim();
  step = "opening tab 2 on the same chat";
  const second = await context.newPage();
  watch(second, 2);
  let held = 0; // both panes' first reads: read now, handed over once tab 1 has sent
  await second.route(/\/v1\/chat\/[^/]+\/messages/, async (route) => {
    if (held >= 2) return route.continue();
    held += 1;
    const response = await route.fetch();
    await firstPost;
    await new Promise((resolve) => setTimeout(resolve, 300));
    await route.fulfill({ response });
  });
  await second.goto(`${base}/#chat=${chatId}`, { waitUntil: "load", timeout: remaining() });
  tabs.push(first, second);

  step = "tab 1 sends; tab 2 must show the turn";
  await sendInPane(first, 0, "Sent from the first tab", remaining);
  await waitForTurn(second, 2);
  await waitForTurn(first, 2);
  step = "tab 2 sends; tab 1 must show the turn";
  await sendInPane(second, 1, "And one from the second tab", remaining);
  await waitForTurn(first, 4);
  await waitForTurn(second, 4);
  step = "reading both tabs";
  const out = { chat_id: chatId, tabs: [await readPanes(first), await readPanes(second)], requests };
  for (const [i, page] of tabs.entries()) {
    await page.screenshot({ path: screenshot.replace(/(\.png)?$/i, `-${i + 1}.png`), fullPage: true });
  }
  if (pageErrors.length) throw new Error(`page errors: ${JSON.stringify(pageErrors)}`);
  return out;
}

await runToEnd("tabs.mjs", {
  timeoutMs: TIMEOUT_MS,
  run,
  step: () => step,
  page: () => tabs[tabs.length - 1] ?? null,
  paneStates: async () =>
    JSON.stringify(await Promise.all(tabs.map((p) => readPanes(p).catch(() => "(unavailable)")))),
  pageErrors,
  screenshot,
  fail,
  cleanup: async () => {
    const ctx = context;
    context = null;
    await script.cleanup(ctx);
  },
});
