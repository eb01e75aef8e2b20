/**
 * The Lunora wire protocol, shared by the client and the server-kit. Client →
 * room frames are valibot schemas with their types derived from them; room →
 * client frames are typed here and checked by hand (`room-frames.ts`, the
 * client's hot path). See `docs/protocol.md` for the readable spec.
 */
export * from "./version.js";
export * from "./errors.js";
export * from "./common.js";
export * from "./subscribe.js";
export * from "./subset.js";
export type * from "./where.js";
export * from "./push.js";
export type * from "./poke.js";
export type * from "./connect.js";
export type * from "./error-frame.js";
export * from "./frame-text.js";
export * from "./frames.js";
export * from "./room-frames.js";
export * from "./api.js";
