// Drives the demo page's chat tab in headless Chromium through a long chat's history: the
// newest page first, older pages on demand.
//
//   CHAT_ID=<id> node tests/clients/browser/older.mjs BASE_URL SCREENSHOT.png [USER_DATA_DIR]
//
// The page opens the chat's address (#chat=<id>, a chat the server holds); once both panes
// show its newest page, pane 1 loads the older pages a click at a time, and pane 2 with a
// double click, then a click for each page left. Every read of the chat's messages the
// page makes is noted (its query). Then the race: the chat opened again, pane 1's next
// older page is held back while pane 2 begins a turn (pane 1 reads the newest page), and
// what pane 1 shows once that page came.
// Prints ONE line of JSON: what the panes show at each step (each message's id, role and
// text, whether the button for older messages shows) and those reads. Saves a screenshot.
// Exits non-zero, with a message on stderr, on failure or when the run takes longer than
// 100 s.

import { runChatTabScript, sendInPane } from "./chat_panes.mjs";

const PAGE = 50; // the page's history page (web/chat/src/index.mjs)
const RACE_TEXT = "a turn begun while older messages load";

const chat = process.env.CHAT_ID;
if (!chat) {
  process.stderr.write("older.mjs: CHAT_ID is not set\n");
  process.exit(64);
}

// What each pane shows, read at one moment.
function shown() {
  return Array.from(document.querySelectorAll("#chat-tab section.chat-pane"), (s) => ({
    status: s.dataset.status,
    following: s.dataset.following === "true",
    error: s.querySelector(".pane-error").textContent,
    older_button: !s.querySelector("button.older").hidden,
    messages: Array.from(s.querySelectorAll(".msg"), (m) => ({
      id: m.dataset.messageId,
      role: m.dataset.role,
      text: Array.from(m.querySelectorAll(".part-text"), (t) => t.textContent).join(""),
    })),
  }));
}

// Pane number `i` (from 0) idle, showing at least `count` messages.
function showing(page, i, count, timeout) {
  return page.waitForFunction(
    ({ i, count }) => {
      const s = document.querySelectorAll("#chat-tab section.chat-pane")[i];
      return (
        s.dataset.status === "ready" &&
        s.dataset.following !== "true" &&
        s.querySelectorAll(".msg").length >= count
      );
    },
    { i, count },
    { timeout, polling: 50 },
  );
}

await runChatTabScript(
  "older.mjs",
  100_000,
  async ({ page, remaining, screenshot, at }) => {
    const reads = [];
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname === `/v1/chat/${chat}/messages`) reads.push(url.search);
    });
    const olderButton = (i) => page.locator("#chat-tab section.chat-pane").nth(i).locator("button.older");
    const out = { steps: [] };

    at("waiting until both panes show the newest page");
    await showing(page, 0, 1, remaining());
    await showing(page, 1, 1, remaining());
    out.steps.push(await page.evaluate(shown));

    // Pane 1: a click at a time, each after the page before it shows.
    for (let n = 1; await olderButton(0).isVisible(); n += 1) {
      at(`pane 1: loading older messages, click ${n}`);
      const before = out.steps.at(-1)[0].messages.length;
      await olderButton(0).click({ timeout: remaining() });
      await showing(page, 0, before + 1, remaining());
      out.steps.push(await page.evaluate(shown));
    }

    // Pane 2: a double click (a reader's impatience), then a click for each page left.
    at("pane 2: a double click on the button for older messages");
    await olderButton(1).dblclick({ timeout: remaining() });
    await showing(page, 1, out.steps[0][1].messages.length + 1, remaining());
    for (let n = 1; await olderButton(1).isVisible(); n += 1) {
      at(`pane 2: loading older messages, click ${n} after the double click`);
      const before = (await page.evaluate(shown))[1].messages.length;
      await olderButton(1).click({ timeout: remaining() });
      await showing(page, 1, before + 1, remaining());
    }
    out.steps.push(await page.evaluate(shown));
    await page.screenshot({ path: screenshot, fullPage: true });
    const pagingReads = reads.length;

    // A turn begun while an older page loads. The chat is opened again (both panes show
    // its newest page); pane 1's next older page is held back until pane 2 has sent a
    // message and pane 1, told of the turn, shows the chat's new newest page. Then the
    // held page comes: pane 1 must show messages that join, with no gap.
    at("the race: opening the chat again");
    await page.reload({ waitUntil: "load", timeout: remaining() });
    await showing(page, 0, 1, remaining());
    await showing(page, 1, 1, remaining());
    let release, held;
    const released = new Promise((resolve) => (release = resolve));
    const heldBack = new Promise((resolve) => (held = resolve));
    const olderPage = (url) => url.pathname === `/v1/chat/${chat}/messages` && url.searchParams.has("before");
    await page.route(
      olderPage,
      async (route) => {
        held();
        await released;
        await route.continue();
      },
      { times: 1 },
    );
    at("the race: pane 1 asks for older messages, its page held back");
    await olderButton(0).click({ timeout: remaining() });
    await heldBack;
    at("the race: pane 2 begins a turn; pane 1 reads the newest page");
    await sendInPane(page, 1, RACE_TEXT, remaining);
    await page.waitForFunction(
      (text) => {
        const msgs = document.querySelectorAll("#chat-tab section.chat-pane")[0].querySelectorAll(".msg");
        return msgs.length > 0 && msgs[msgs.length - 1].textContent.includes(text);
      },
      RACE_TEXT,
      { timeout: remaining(), polling: 50 },
    );
    release();
    at("the race: pane 1 shows an older page");
    await page.waitForFunction(
      (count) => {
        const s = document.querySelectorAll("#chat-tab section.chat-pane")[0];
        return !s.querySelector("button.older").disabled && s.querySelectorAll(".msg").length >= count;
      },
      2 * PAGE,
      { timeout: remaining(), polling: 50 },
    );
    out.race = (await page.evaluate(shown))[0];
    return { ...out, reads: reads.slice(0, pagingReads), race_reads: reads.slice(pagingReads) };
  },
  `/#chat=${chat}`,
);
