// Runs the tests' short Node client scripts in one long-lived process, as if each were
// `node SCRIPT ARGS < STDIN` of its own, so that a run costs no Node start and no import of
// the `ai` or AG-UI packages (about 0.4 s of CPU each, paid once here instead of about a
// hundred times a suite). tests/support/node_host.py starts it and speaks to it.
//
// Requests, one JSON line each on stdin:
//   {"op": "run", "id": N, "script": "/abs/path.mjs", "args": [...], "stdin": "..."}
//   {"op": "kill", "id": N}
// Answers, one JSON line each on stdout, when a run ends:
//   {"id": N, "code": 0, "stdout": "...", "stderr": "..."}
//
// Each run sees its own process.argv, process.stdin, process.stdout/stderr writes and
// process.exit (an AsyncLocalStorage follows it through its awaits, timers and callbacks).
// A run ends when it calls process.exit, as a script's process would: the scripts run here
// end that way. At its end its timers are cleared and its fetches aborted, as a process's
// exit closes its sockets; what it writes afterwards is dropped. The script module is
// evaluated afresh for each run (a query string in its URL); what it imports is shared.
// An uncaught error ends its run with status 1, as it would end its process; one that no
// run can be blamed for fails every run in progress, never passes one.

import { AsyncLocalStorage } from "node:async_hooks";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";

const runs = new AsyncLocalStorage();
const active = new Map(); // id -> run
const writeOut = process.stdout.write.bind(process.stdout);
const realExit = process.exit.bind(process);
const realArgv = process.argv;
const realStdin = Object.getOwnPropertyDescriptor(process, "stdin");
const realFetch = globalThis.fetch;
const real = { setTimeout, setInterval, clearTimeout, clearInterval };

class Exit extends Error {}

function answer(run) {
  writeOut(`${JSON.stringify({ id: run.id, code: run.code, stdout: run.out, stderr: run.err })}\n`);
}

function finish(run, code) {
  if (run.done) return;
  run.done = true;
  run.code = code;
  active.delete(run.id);
  for (const t of run.timers) real.clearTimeout(t);
  run.abort.abort(new Error("the script's run ended"));
  answer(run);
}

function redirect(stream, key) {
  const own = stream.write.bind(stream);
  stream.write = (chunk, encoding, callback) => {
    const run = runs.getStore();
    if (!run) return own(chunk, encoding, callback);
    if (!run.done) run[key] += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    const done = typeof encoding === "function" ? encoding : callback;
    if (typeof done === "function") queueMicrotask(done);
    return true;
  };
}
redirect(process.stdout, "out");
redirect(process.stderr, "err");

process.exit = (code) => {
  const run = runs.getStore();
  if (!run) return realExit(code);
  finish(run, Number(code ?? process.exitCode ?? 0) || 0);
  throw new Exit("exit");
};
Object.defineProperty(process, "argv", {
  configurable: true,
  get: () => runs.getStore()?.argv ?? realArgv,
});
Object.defineProperty(process, "stdin", {
  configurable: true,
  get: () => runs.getStore()?.stdin ?? realStdin.get.call(process),
});

// A run's fetches end with it, as its process's sockets would.
globalThis.fetch = (input, init = {}) => {
  const run = runs.getStore();
  if (!run) return realFetch(input, init);
  const signal = init.signal ? AbortSignal.any([init.signal, run.abort.signal]) : run.abort.signal;
  return realFetch(input, { ...init, signal });
};
// A run's timers, cleared at its end; a timer leaves the set when it fires or is cleared.
function track(name, fn, ms, rest) {
  const run = runs.getStore();
  if (!run) return real[name](fn, ms, ...rest);
  const handle = real[name]((...args) => {
    if (name === "setTimeout") run.timers.delete(handle);
    fn(...args);
  }, ms, ...rest);
  if (run.done) real.clearTimeout(handle);
  else run.timers.add(handle);
  return handle;
}
globalThis.setTimeout = (fn, ms, ...rest) => track("setTimeout", fn, ms, rest);
globalThis.setInterval = (fn, ms, ...rest) => track("setInterval", fn, ms, rest);
globalThis.clearTimeout = globalThis.clearInterval = (handle) => {
  runs.getStore()?.timers.delete(handle);
  real.clearTimeout(handle);
};

function failTheRun(err) {
  if (err instanceof Exit) return; // a run's exit, unwinding: that run has answered
  const run = runs.getStore();
  if (run?.done) return; // after its end: a process would be gone, and say nothing
  const blamed = run ? [run] : [...active.values()];
  for (const r of blamed) {
    r.err += `${err?.stack ?? err}\n`;
    finish(r, 1);
  }
  if (blamed.length === 0) process.stderr.write(`host.mjs: ${err?.stack ?? err}\n`);
}
process.on("uncaughtException", failTheRun);
process.on("unhandledRejection", failTheRun);

function start({ id, script, args = [], stdin = "" }) {
  const run = {
    id,
    argv: [realArgv[0], script, ...args],
    stdin: Readable.from([Buffer.from(stdin)]),
    out: "",
    err: "",
    code: null,
    done: false,
    timers: new Set(),
    abort: new AbortController(),
  };
  active.set(id, run);
  const url = `${pathToFileURL(script).href}?run=${id}`;
  runs.run(run, () => {
    import(url).catch((err) => {
      if (err instanceof Exit || run.done) return;
      run.err += `${err?.stack ?? err}\n`;
      finish(run, 1);
    });
  });
}

const lines = createInterface({ input: realStdin.get.call(process) });
lines.on("line", (line) => {
  const request = JSON.parse(line);
  if (request.op === "run") start(request);
  else if (request.op === "kill") {
    const run = active.get(request.id);
    if (run) finish(run, -9);
  }
});
lines.on("close", () => realExit(0));
