// @llm-stream-broadcaster/client: the broadcaster's client for browsers and Node >= 20.

export { followStream, TERMINAL_TYPES } from "./stream.js";
export { followEvents, eventsUrl, type DashboardEvent, type EventsSelection } from "./events.js";
export { TOKEN_EXPIRED, type FollowOptions, type StreamEvent } from "./connect.js";
export type { GetToken, HeadersOption, AuthOptions } from "./auth.js";
export type { BackoffOptions } from "./backoff.js";
export { BroadcasterError } from "./errors.js";
export { SSEParser, type SSEFrame } from "./sse.js";
export {
  BroadcasterChatTransport,
  type BroadcasterChatTransportOptions,
  type SendMessagesOptions,
  type ReconnectToStreamOptions,
  type MessagesPage,
  type ApprovingChat,
} from "./chat/transport.js";
export type { FollowTarget } from "./chat/follow.js";
export { approvalBinding, canonicalJson, inputHash, type MessageLike } from "./chat/approval.js";
