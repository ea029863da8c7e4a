// What fold.mjs (the AI SDK 6) and ../workflow/fold.mjs (the AI SDK 7) share: each stream
// of UI message chunks served as the SSE body a live tab reads, parsed by the SDK's own
// transport (its uiMessageChunkSchema) and assembled by its readUIMessageStream, as
// useChat does. The reader's last snapshot is the message.
//
// stdin: {"streams": [[chunk, ...], ...]}; stdout: one JSON line, a list with, per
// stream, {"message": UIMessage | null, "errors": [...]}: `errors` holds what the SDK
// reported (an `error` chunk's text, or its reason for refusing a chunk).

export async function foldStreams({ DefaultChatTransport, readUIMessageStream }) {
  let input = "";
  for await (const bytes of process.stdin) input += bytes;
  const { streams } = JSON.parse(input);
  const transport = new DefaultChatTransport({ api: "http://127.0.0.1:9/unused" });
  const out = [];
  for (const chunks of streams) {
    const sse = chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join("") + "data: [DONE]\n\n";
    const body = new Response(sse).body;
    const errors = [];
    let message = null;
    try {
      for await (const m of readUIMessageStream({
        stream: transport.processResponseStream(body),
        onError: (err) => errors.push(String(err?.message ?? err).slice(0, 400)),
      })) {
        message = m;
      }
    } catch (err) {
      errors.push(String(err?.message ?? err).slice(0, 400));
    }
    out.push({ message, errors });
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}
