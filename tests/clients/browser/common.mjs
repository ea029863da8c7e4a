// Shared by the browser tests: a browser context on the test process's shared Chromium
// (or, run by hand, on Debian's Chromium started with a fresh profile) and the demo page
// opened in it (at `path`, "/" unless given), recording page errors, console errors and
// HTTP errors as they come.

import { existsSync, mkdirSync, mkdtempSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { createInterface } from "node:readline";

// Debian's headless shell (chromium-headless-shell): the same engine as /usr/bin/chromium
// without its window layer, for less CPU for the same page (docs/testing.md).
export const CHROMIUM = "/usr/bin/chromium-headless-shell";

// The shared browser's WebSocket address (tests/support/shared_chromium.py), if any.
const SHARED = process.env.BROADCASTER_TEST_CHROMIUM || "";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// The folder Chromium makes in the temporary directory for a profile's singleton socket
// (the profile's SingletonSocket links into it), or null. A browser that is closed, not
// quit from its own menu, can leave it behind: the script's cleanup removes it.
function socketDirOf(userDataDir) {
  try {
    const dir = dirname(readlinkSync(join(userDataDir, "SingletonSocket")));
    return basename(dir).startsWith("org.chromium.Chromium.") ? dir : null;
  } catch {
    return null;
  }
}

// What every browser script starts with: its arguments (BASE_URL SCREENSHOT.png
// [USER_DATA_DIR]), Chromium and playwright-core checked (exit 3 if missing), its clock
// (`remaining()` of `timeoutMs`), and `openContext(options)`: a browser context of its
// own on the shared browser when the test gave one (BROADCASTER_TEST_CHROMIUM), else a
// browser of its own in the profile folder: USER_DATA_DIR if given (the caller owns it),
// else a fresh temporary one that `cleanup` removes.
export async function startScript(name, timeoutMs) {
  const started = Date.now();
  const fail = (message, code = 1) => {
    process.stderr.write(`${name}: ${message}\n`);
    process.exit(code);
  };
  const [baseArg, screenshot, userDataArg] = process.argv.slice(2);
  if (!baseArg || !screenshot) fail(`usage: node ${name} BASE_URL SCREENSHOT.png [USER_DATA_DIR]`, 64);
  if (!SHARED && !existsSync(CHROMIUM)) {
    fail(`${CHROMIUM} not found: install Debian's chromium-headless-shell package (apt-get install chromium-headless-shell)`, 3);
  }
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (err) {
    fail(`playwright-core is not installed: run npm ci --prefix tests/clients/browser (${err.message})`, 3);
  }
  const remaining = () => Math.max(1, timeoutMs - (Date.now() - started));
  const userDataDir = SHARED ? null : userDataArg || mkdtempSync(join(tmpdir(), "broadcaster-chromium-"));
  if (userDataDir) mkdirSync(userDataDir, { recursive: true });
  let browser = null; // the connection to the shared browser
  return {
    base: baseArg.replace(/\/+$/, ""),
    screenshot,
    fail,
    started,
    remaining,
    async openContext(options) {
      if (!SHARED) {
        return chromium.launchPersistentContext(userDataDir, {
          executablePath: CHROMIUM,
          headless: true,
          args: ARGS,
          timeout: remaining(),
          ...options,
        });
      }
      browser = await chromium.connectOverCDP(SHARED, { timeout: remaining() });
      return browser.newContext(options);
    },
    // Close the context (given at most 5 s) and the connection to the shared browser; a
    // browser of the script's own is closed with its context: remove the folder of its
    // singleton socket and a profile the script made.
    async cleanup(context) {
      const socketDir = userDataDir && socketDirOf(userDataDir);
      const within5s = (promise) => Promise.race([promise.catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
      if (context) await within5s(context.close());
      if (browser) await within5s(browser.close());
      if (socketDir) rmSync(socketDir, { recursive: true, force: true });
      if (userDataDir && !userDataArg) rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

export async function openDemoPage(openContext, base, remaining, errors, path = "/") {
  const context = await openContext({ viewport: { width: 1280, height: 900 } });
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (err) => errors.pageErrors.push(String(err.message || err)));
  page.on("console", (msg) => {
    if (msg.type() === "error") {
      errors.consoleErrors.push({ text: msg.text(), url: msg.location().url || "" });
    }
  });
  page.on("response", (r) => {
    if (r.status() >= 400) errors.httpErrors.push({ url: r.url(), status: r.status() });
  });
  const resp = await page.goto(`${base}${path}`, { waitUntil: "load", timeout: remaining() });
  if (!resp || !resp.ok()) {
    await context.close().catch(() => {});
    throw new Error(`GET ${base}${path} answered ${resp ? resp.status() : "nothing"}`);
  }
  return { context, page };
}

// On the demo page: `prompt` typed into its prompt box, Generate clicked, and the
// generation's id it then shows (the page's error, if it shows one instead, thrown).
// `at(step)` is told what it does now (for a failure's message).
export async function generate(page, prompt, remaining, at) {
  at("typing the prompt");
  const box = page.locator("#prompt");
  await box.fill("", { timeout: remaining() });
  await box.pressSequentially(prompt, { timeout: remaining() });
  const typed = await box.inputValue();
  if (typed !== prompt) throw new Error(`the textarea holds ${JSON.stringify(typed)}, not the prompt`);

  at("clicking #generate");
  await page.click("#generate", { timeout: remaining() });

  at("waiting for the generation id");
  await page.waitForFunction(
    () => {
      const t = document.querySelector("#generation-id").textContent.trim();
      return (t && t !== "—") || document.querySelector("#error").textContent.trim();
    },
    null,
    { timeout: remaining(), polling: 100 },
  );
  const formError = (await page.textContent("#error")).trim();
  if (formError) throw new Error(`the page shows an error after Generate: ${formError}`);
  return (await page.textContent("#generation-id")).trim();
}

// Run a browser script's `run()` under a deadline: print its result as one JSON line and
// exit 0; on failure or timeout say where it was (and the panes' states), save a picture
// of the page as it was next to the requested screenshot, and exit 1 (2 on timeout).
export async function runToEnd(name, s) {
  // Backstop: if something hangs where no Playwright timeout applies, still end.
  setTimeout(
    () => s.fail(`still running ${s.timeoutMs / 1000 + 20} s after the start (while ${s.step()}); killed`, 2),
    s.timeoutMs + 20_000,
  ).unref();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error("timeout"), { name: "TimeoutError" })), s.timeoutMs);
  });
  try {
    const out = await Promise.race([s.run(), timeout]);
    clearTimeout(timer);
    process.stdout.write(JSON.stringify(out) + "\n");
    await s.cleanup();
    process.exit(0);
  } catch (err) {
    clearTimeout(timer);
    const states = await s.paneStates();
    let message;
    if (err && err.name === "TimeoutError") {
      message = `timed out after ${s.timeoutMs / 1000} s while ${s.step()}; panes: ${states}`;
    } else {
      message = `failed while ${s.step()}: ${String((err && err.message) || err).split("\n")[0]}; panes: ${states}`;
    }
    if (s.pageErrors.length) message += `; page errors: ${JSON.stringify(s.pageErrors)}`;
    const page = s.page();
    if (page) {
      const failed = s.screenshot.replace(/(\.png)?$/i, ".failed.png");
      await page.screenshot({ path: failed, fullPage: true, timeout: 5000 }).then(
        () => (message += `; screenshot of the failure: ${failed}`),
        () => {},
      );
    }
    process.stderr.write(`${name}: ${message}\n`);
    await s.cleanup();
    process.exit(err && err.name === "TimeoutError" ? 2 : 1);
  }
}

// Pane states as the page shows them, for error messages.
export async function paneStates(page, names) {
  if (!page) return "(no page)";
  try {
    const states = await Promise.race([
      page.evaluate(
        (panes) =>
          panes.map((n) => {
            const s = document.querySelector(`section.pane[data-pane="${n}"]`);
            return `${n}=${s ? s.getAttribute("data-state") : "missing"}`;
          }),
        names,
      ),
      new Promise((resolve) => setTimeout(() => resolve(["(page did not answer)"]), 3000)),
    ]);
    return states.join(" ");
  } catch (err) {
    return `(unavailable: ${err.message.split("\n")[0]})`;
  }
}

// Lines from the caller (the test, on stdin): a function that returns a promise of the
// next line, in order, whether it came before or after the call.
export function stdinLines() {
  const lines = [];
  const waiters = [];
  createInterface({ input: process.stdin }).on("line", (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter(line);
    else lines.push(line);
  });
  return () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((resolve) => waiters.push(resolve)));
}
