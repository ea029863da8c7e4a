// Streams of UI message chunks as the AI SDK 6 assembles them (aisdk/fold_streams.mjs);
// driven by tests/clients/test_fold_property.py.
import * as ai from "ai";
import { foldStreams } from "./fold_streams.mjs";

await foldStreams(ai);
