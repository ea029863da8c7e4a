// Drives the demo page's chat tab against an agent, in headless Chromium: the page opened
// as BASE_URL/?provider=AGENT#chat, so every submit names the agent as its `provider`.
//
//   node tests/clients/browser/agent_chat.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR AGENT STEPS
//
// STEPS, comma-separated, are played in order on the one chat both panes of tab 1 show
// (see STEPS below): `reload` (a slow answer, the page reloaded mid-way, both panes resume
// it), `reload-held` (the same with an answer the caller holds until the script prints
// RELOADED), `tool` (the agent's own tool), `stop` (pane 2's Stop mid-answer), `kill` (the
// script prints KILL mid-answer: the caller kills the agent's process and starts another,
// which takes the answer over), `approval` (a delete the agent asks a person about,
// approved from a second tab) and `late` (a quick answer that pane 1 comes to late: its
// reads of the chat are held until pane 2's answer has ended). tests/support/agents.py's
// `helper` answers "slow" in 60 words a tenth of a second apart, any other prompt in 5
// words at once, runs `weather`, and asks before `delete`.
// Prints ONE line of JSON with what every pane showed after each step. Exits non-zero,
// with a message on stderr, on failure or when the run takes longer than 110 s.

import { answerShown as shownIn, readPanes as panesOf, turnEnded as endedIn } from "./chat_panes.mjs";
import { openDemoPage, runToEnd, startScript } from "./common.mjs";

const TIMEOUT_MS = 110_000;
const STEP_NAMES = ["reload", "reload-held", "tool", "stop", "kill", "approval", "late"];
const [agent, stepList] = process.argv.slice(5);
const steps = (stepList || "").split(",").filter(Boolean);
if (!agent || !steps.length || steps.some((name) => !STEP_NAMES.includes(name))) {
  process.stderr.write(`usage: node agent_chat.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR AGENT STEP,... (of ${STEP_NAMES})\n`);
  process.exit(64);
}
const { base, screenshot, openContext, fail, remaining, ...script } = await startScript(
  "agent_chat.mjs",
  TIMEOUT_MS,
);
let step = "starting";
let context = null;
const tabs = [];
const errors = { pageErrors: [], consoleErrors: [], httpErrors: [] };
const posts = []; // every POST /v1/chat: its tab and the provider its body named

const readPanes = (page) => panesOf(page);
const turnEnded = (page, count, outcome) => endedIn(page, count, outcome, remaining());
const answerShown = (page, count) => shownIn(page, count, remaining());

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

// The steps, by name; each adds one turn (two messages) to the chat.
const STEPS = {
  // A slow answer, the page reloaded mid-way: both panes resume it.
  async reload(page, n, out) {
    await send(page, 0, "slow: the first answer");
    await answerShown(page, n);
    out.before_reload = await readPanes(page);
    await page.reload({ waitUntil: "load", timeout: remaining() });
    await turnEnded(page, n, "finish");
    out.first = await readPanes(page);
  },
  // The same with an answer the caller holds: once both panes resumed it after the
  // reload, the script prints RELOADED and the caller lets the answer go on.
  async "reload-held"(page, n, out) {
    await send(page, 0, "an answer held mid-way");
    await answerShown(page, n);
    out.before_reload = await readPanes(page);
    await page.reload({ waitUntil: "load", timeout: remaining() });
    await answerShown(page, n);
    out.resumed = await readPanes(page);
    process.stdout.write("RELOADED\n");
    await turnEnded(page, n, "finish");
    out.first = await readPanes(page);
  },
  // The agent's own tool.
  async tool(page, n, out) {
    await send(page, 1, "the weather, please");
    await turnEnded(page, n, "finish");
    out.tool = await readPanes(page);
  },
  // A slow answer that pane 2's Stop ends mid-way.
  async stop(page, n, out) {
    await send(page, 0, "slow: to be stopped");
    await answerShown(page, n);
    await pane(page, 1).locator("button.stop").click({ timeout: remaining() });
    await turnEnded(page, n, "abort");
    out.stopped = await readPanes(page);
  },
  // A slow answer during which the caller, told KILL, kills the agent's process and
  // starts another, which takes the answer over.
  async kill(page, n, out) {
    await send(page, 0, "slow: the worker dies");
    await answerShown(page, n);
    process.stdout.write("KILL\n");
    await turnEnded(page, n, "finish");
    out.takeover = await readPanes(page);
  },
  // A delete the agent asks a person about, approved from a second tab on the chat.
  async approval(page, n, out) {
    await send(page, 1, "delete the file");
    await approvalShown(page, n);
    const second = await context.newPage();
    watch(second, 2);
    tabs.push(second);
    await second.goto(`${base}/?provider=${agent}#chat=${out.chat_id}`, { waitUntil: "load", timeout: remaining() });
    await approvalShown(second, n);
    out.asked = [await readPanes(page), await readPanes(second)];
    await pane(second, 0).locator("button.approve").click({ timeout: remaining() });
    await turnEnded(second, n, "finish");
    await turnEnded(page, n, "finish");
    out.approved = [await readPanes(page), await readPanes(second)];
  },
  // A quick answer sent from pane 2 that pane 1 comes to late: pane 1's reads of the chat
  // (GET /v1/chat/{id}/messages) are held until pane 2 shows the answer ended, so the page
  // it reads says `completed` and holds the whole answer. Pane 1 shows all of it, and
  // that it finished.
  async late(page, n, out) {
    const reads = /\/v1\/chat\/[^/]+\/messages(\?|$)/;
    let release;
    const ended = new Promise((resolve) => (release = resolve));
    out.late_reads = 0;
    await page.route(reads, async (route) => {
      out.late_reads += 1;
      await ended;
      await route.continue();
    });
    try {
      await send(page, 1, "a quick one, please");
      await page.waitForFunction(
        (n) => {
          const s = document.querySelectorAll("#chat-tab section.chat-pane")[1];
          return s.querySelectorAll(".msg").length === n && s.querySelector(".outcome").dataset.kind === "finish";
        },
        n,
        { timeout: remaining(), polling: 50 },
      );
    } finally {
      release();
    }
    await turnEnded(page, n, "finish");
    await page.unroute(reads);
    out.late = await readPanes(page);
  },
};

async function run() {
  const out = {};
  step = "opening the page on the agent";
  let page;
  ({ context, page } = await openDemoPage(openContext, base, remaining, errors, `/?provider=${agent}#chat`));
  tabs.push(page);
  watch(page, 1);
  await page.waitForFunction(() => document.querySelector("#chat-id").textContent !== "—", null, {
    timeout: remaining(),
    polling: 100,
  });
  out.chat_id = (await page.textContent("#chat-id")).trim();
  for (const [i, name] of steps.entries()) {
    step = `step ${i + 1}: ${name}`;
    await STEPS[name](page, 2 * (i + 1), out);
  }
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
