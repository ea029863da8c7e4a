// Streams of UI message chunks as the AI SDK 7 assembles them (../aisdk/fold_streams.mjs);
// driven by tests/clients/test_fold_property.py.
import * as ai from "ai";
import { foldStreams } from "../aisdk/fold_streams.mjs";

await foldStreams(ai);
