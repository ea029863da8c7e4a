// Type-checked by `npm run typecheck`, never run: the transport is a ChatTransport of
// ai 7 and of ai 6, and what useChat returns is a FollowTarget and an ApprovingChat.
import type { AbstractChat as Chat7, ChatTransport as Transport7, UIMessage as Message7 } from "ai";
import type { AbstractChat as Chat6, ChatTransport as Transport6, UIMessage as Message6 } from "ai6";
import { BroadcasterChatTransport, type ApprovingChat, type FollowTarget } from "../src/index.js";

const transport = new BroadcasterChatTransport({ api: "/v1/chat", getToken: async () => "token" });
export const seven: Transport7<Message7> = transport;
export const six: Transport6<Message6> = transport;

declare const chat7: Chat7<Message7> & { setMessages(update: (m: Message7[]) => Message7[]): void };
declare const chat6: Chat6<Message6> & { setMessages(update: (m: Message6[]) => Message6[]): void };
export const targets: FollowTarget[] = [chat7, chat6];
export const approving: ApprovingChat[] = [chat7, chat6];
