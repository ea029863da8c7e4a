// The AI SDK's own Chat (AbstractChat of ai 7 and of ai 6) over a plain state, as the
// transport's tests drive it.
import { AbstractChat as Chat7, type UIMessage } from "ai";
import { AbstractChat as Chat6 } from "ai6";

class State {
  status = "ready";
  error: Error | undefined = undefined;
  messages: UIMessage[] = [];
  pushMessage = (m: UIMessage) => void (this.messages = this.messages.concat([m]));
  popMessage = () => void (this.messages = this.messages.slice(0, -1));
  replaceMessage = (i: number, m: UIMessage) => {
    this.messages = this.messages.slice();
    this.messages[i] = structuredClone(m);
  };
  snapshot = <T>(x: T): T => structuredClone(x);
}

/** What the tests use of a Chat, in either version. */
export interface AnyChat {
  messages: UIMessage[];
  status: string;
  error: Error | undefined;
  sendMessage(m: { text: string }): Promise<void>;
  resumeStream(): Promise<void>;
  stop(): Promise<void>;
}

type ChatClass = new (options: object) => AnyChat;
export const SDKS: Array<[string, ChatClass]> = [
  ["ai 7", Chat7 as unknown as ChatClass],
  ["ai 6", Chat6 as unknown as ChatClass],
];

/** A Chat of `Sdk` on `chatId`, its requests made by `transport`. */
export function makeChat(Sdk: ChatClass, chatId: string, transport: unknown): AnyChat {
  return new Sdk({ id: chatId, transport, state: new State() });
}

/** A message's text parts, joined. */
export const text = (m: UIMessage | undefined) => (m?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");
