/** The transport: one socket per room, cursors, pokes, status. */
export { LunoraClient, MAX_SUBSCRIPTIONS_PER_CLIENT, MAX_ENQUEUED_MESSAGES } from "./lunora-client.js";
export type { LunoraClientOptions, ClientErrorContext } from "./lunora-client.js";
export type { SubscriptionHandler, SubscribeOptions, Subscription, PokeUpdate } from "./subscription.js";
export type { ConnectionStatus, RoomStatus } from "./status.js";
export { ANONYMOUS_IDENTITY, tokenFingerprint } from "./identity.js";
export type { AuthProvider, IdentifyToken } from "./identity.js";
export { DEFAULT_POKE_BUFFER_LIMITS } from "./poke-buffer.js";
