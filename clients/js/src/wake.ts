// The moments a browser comes back: the page shown again (a phone woken, a tab brought
// forward) and the network back. Nothing to listen to in Node: the callback never runs.

type Listener = () => void;

/** Calls `listener` when the page becomes visible or the browser goes online; returns
 * what stops listening. */
export function onWake(listener: Listener): () => void {
  const doc = (globalThis as { document?: Document }).document;
  const win = (globalThis as { window?: Window }).window;
  if (!doc || !win || typeof win.addEventListener !== "function") return () => {};
  const visible = () => {
    if (doc.visibilityState === "visible") listener();
  };
  doc.addEventListener("visibilitychange", visible);
  win.addEventListener("online", listener);
  return () => {
    doc.removeEventListener("visibilitychange", visible);
    win.removeEventListener("online", listener);
  };
}

/** Resolves after `ms`, or at once when `signal` aborts or `wake` fires. */
export function pause(ms: number, signal?: AbortSignal, wake?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || wake?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      wake?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    wake?.addEventListener("abort", done, { once: true });
  });
}
