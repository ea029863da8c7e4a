// CopilotKit's React chat (examples/copilotkit, bundled) in Debian's Chromium, its runtime
// the broadcaster's /v1/agui: a message sent, the answer streamed, the page reloaded
// mid-answer and the answer resumed (driven by tests/clients/test_copilotkit.py).
//
//   node copilotkit.mjs BASE_URL SCREENSHOT.png USER_DATA_DIR THREAD PROMPT FIRST LAST
//
// The example's files are served at BASE_URL/copilotkit/ (same origin as /v1/agui) by the
// browser itself (Playwright's routing). Once the answer's FIRST word shows, the page is
// reloaded; once it shows again after the reload (the thread's history and the answer so
// far, from `connect`), the script prints "RELOADED" and waits for LAST. It prints one
// JSON line: how often the prompt and the answer show, the text, and the /v1/agui requests.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CHROMIUM, runToEnd, startScript } from "./common.mjs";

const NAME = "copilotkit.mjs";
const EXAMPLE = join(import.meta.dirname, "..", "..", "..", "examples", "copilotkit");
const TYPES = { html: "text/html", js: "text/javascript", css: "text/css" };
const s = await startScript(NAME, 90_000);
const [thread, prompt, first, last] = process.argv.slice(5);
if (!last) s.fail("usage: node copilotkit.mjs BASE SHOT DIR THREAD PROMPT FIRST LAST", 64);

let step = "starting Chromium";
let context;
let page;
const requests = [];
const pageErrors = [];

const count = (text, what) => text.split(what).length - 1;
const bodyText = () => page.evaluate(() => document.body.innerText);
async function waitForText(what, label) {
  step = label;
  await page.waitForFunction((w) => document.body.innerText.includes(w), what, {
    timeout: s.remaining(),
  });
}

async function run() {
  context = await s.chromium.launchPersistentContext(s.userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
    viewport: { width: 1000, height: 800 },
    timeout: s.remaining(),
  });
  await context.route(`${s.base}/copilotkit/**`, (route) => {
    const path = new URL(route.request().url()).pathname.replace(/^\/copilotkit\//, "");
    const ext = path.split(".").pop();
    route.fulfill({ body: readFileSync(join(EXAMPLE, path)), contentType: TYPES[ext] || "text/plain" });
  });
  page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (err) => pageErrors.push(String(err.message || err)));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console: ${m.text()}`.slice(0, 300));
  });
  page.on("request", (r) => {
    if (r.url().includes("/v1/agui/")) requests.push(`${r.method()} ${new URL(r.url()).pathname}`);
  });
  step = "opening the page";
  const connected = page.waitForResponse((r) => r.url().endsWith("/connect"), { timeout: s.remaining() });
  await page.goto(`${s.base}/copilotkit/index.html?thread=${encodeURIComponent(thread)}`, {
    waitUntil: "load",
    timeout: s.remaining(),
  });
  step = "sending the message";
  const input = page.locator("textarea").first();
  await input.waitFor({ timeout: s.remaining() });
  await connected; // the chat takes input once the thread is joined
  await input.fill(prompt);
  await page.locator('[data-testid="copilot-send-button"]').click({ timeout: s.remaining() });
  await waitForText(first, "waiting for the answer's first words");
  step = "reloading mid-answer";
  await page.reload({ waitUntil: "load", timeout: s.remaining() });
  await waitForText(prompt, "waiting for the thread's history after the reload");
  await waitForText(first, "waiting for the answer so far after the reload");
  process.stdout.write("RELOADED\n");
  await waitForText(last, "waiting for the rest of the answer");
  step = "reading the page";
  await page.waitForTimeout(300); // a duplicate, if any, would show by now
  const text = await bodyText();
  await page.screenshot({ path: s.screenshot, fullPage: true });
  return { prompts: count(text, prompt), firsts: count(text, first), lasts: count(text, last),
           text, requests, pageErrors };  // prettier-ignore
}

await runToEnd(NAME, {
  ...s,
  timeoutMs: 90_000,
  run,
  step: () => step,
  page: () => page,
  pageErrors,
  paneStates: async () => "(no panes)",
  cleanup: () => s.cleanup(context),
});
