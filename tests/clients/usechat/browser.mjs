// One browser context for a whole test module, driven line by line: the test writes a
// command (one JSON object a line) on stdin, this answers one JSON line on stdout. Tabs are
// pages of the context, on the app built by build.mjs, served at BASE/usechat/ (the
// front-end's origin) by Playwright's routing. The context is on the test process's shared
// Chromium (BROADCASTER_TEST_CHROMIUM, its WebSocket address), else on a Chromium of its own.
//
//   node browser.mjs BASE APPDIR
//
// Commands: {"op": "open", "tab", "path"} · {"op": "send", "tab", "text"} ·
// {"op": "click", "tab", "selector"} · {"op": "reload", "tab"} · {"op": "close", "tab"} ·
// {"op": "wait", "tab", "until": JS expression over `s` (what "read" gives), "ms"} ·
// {"op": "read", "tab"} · {"op": "eval", "tab", "js"} · {"op": "quit"} ·
// {"op": "tokens", "key", "ttl"}: from then on, POST BASE/usechat/token/CHAT answers as an
// app's backend would, with a new chat token each time (the front-end's
// POST /v1/chat/CHAT/tokens with the API key `key`, living `ttl` seconds): the browser
// never holds the key.
// Answers: {"ok": true, ...} or {"ok": false, "error", "state"}.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [base, appDir] = process.argv.slice(2);
const TYPES = { html: "text/html", js: "text/javascript" };
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const shared = process.env.BROADCASTER_TEST_CHROMIUM;
const browser = shared
  ? await chromium.connectOverCDP(shared, { timeout: 30_000 })
  : await chromium.launch({ executablePath: "/usr/bin/chromium-headless-shell", headless: true, args: ARGS });
const context = await browser.newContext();
await context.route(`${base}/usechat/**`, (route) => {
  const path = new URL(route.request().url()).pathname.replace(/^\/usechat\//, "");
  route.fulfill({ body: readFileSync(join(appDir, path)), contentType: TYPES[path.split(".").pop()] || "text/plain" });
});
const tabs = new Map();

// The app's backend minting a chat token (the page's `&token=/usechat/token/CHAT`).
async function mintChatToken(route, key, ttl) {
  const chat = new URL(route.request().url()).pathname.split("/").pop();
  const minted = await fetch(`${base}/v1/chat/${chat}/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ ttl_seconds: ttl }),
  });
  await route.fulfill({ status: minted.status, body: await minted.text(), contentType: "application/json" });
}

function read(page) {
  return page.evaluate(() => {
    const main = document.querySelector("main");
    return {
      status: main?.dataset.status ?? null,
      error: main?.dataset.error ?? null,
      tokensAsked: window.tokensAsked ?? [],
      messages: [...document.querySelectorAll(".msg")].map((m) => ({
        role: m.dataset.role,
        text: [...m.querySelectorAll(".text")].map((t) => t.textContent).join(""),
        texts: m.querySelectorAll(".text").length,
        tools: [...m.querySelectorAll(".tool")].map((t) => t.dataset.state),
      })),
    };
  });
}

async function run(command) {
  const tab = tabs.get(command.tab);
  switch (command.op) {
    case "open": {
      const page = await context.newPage();
      const entry = { page, errors: [] };
      page.on("pageerror", (err) => entry.errors.push(String(err.message || err)));
      tabs.set(command.tab, entry);
      await page.goto(`${base}${command.path}`, { waitUntil: "load" });
      await page.waitForSelector("main");
      return {};
    }
    case "send":
      await tab.page.fill("input", command.text);
      await tab.page.click("button.send");
      return {};
    case "click":
      await tab.page.click(command.selector, { timeout: 10_000 });
      return {};
    case "reload":
      await tab.page.reload({ waitUntil: "load" });
      await tab.page.waitForSelector("main");
      return {};
    case "close":
      await tab.page.close();
      tabs.delete(command.tab);
      return { errors: tab.errors };
    case "tokens":
      // Registered last, so it comes before the route serving the app's files.
      await context.route(`${base}/usechat/token/*`, (route) => mintChatToken(route, command.key, command.ttl));
      return {};
    case "read":
      return { state: await read(tab.page), errors: tab.errors };
    case "eval":
      return { value: await tab.page.evaluate(command.js) };
    case "wait": {
      const check = new Function("s", `return (${command.until});`);
      const deadline = Date.now() + (command.ms ?? 30_000);
      let state = await read(tab.page);
      while (!check(state)) {
        if (Date.now() > deadline) throw Object.assign(new Error(`not yet: ${command.until}`), { state });
        await new Promise((r) => setTimeout(r, 50));
        state = await read(tab.page);
      }
      return { state, errors: tab.errors };
    }
    default:
      throw new Error(`unknown op ${command.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
process.stdout.write(`${JSON.stringify({ ok: true, ready: true })}\n`);
for await (const line of lines) {
  const command = JSON.parse(line);
  if (command.op === "quit") break;
  try {
    process.stdout.write(`${JSON.stringify({ ok: true, ...(await run(command)) })}\n`);
  } catch (err) {
    const state = err.state ?? (tabs.get(command.tab) ? await read(tabs.get(command.tab).page).catch(() => null) : null);
    process.stdout.write(`${JSON.stringify({ ok: false, error: String(err.message || err), state })}\n`);
  }
}
await context.close();
await browser.close(); // on the shared browser: only the connection
process.exit(0);
