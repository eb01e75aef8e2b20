/**
 * The Lunora wire protocol, shared by the client and the server-kit. Every
 * frame is a valibot schema and its TypeScript type is derived from it; see
 * `docs/protocol.md` for the readable spec.
 */
export * from "./version.js";
export * from "./errors.js";
export * from "./common.js";
export * from "./subscribe.js";
export * from "./subset.js";
export type * from "./where.js";
export * from "./push.js";
export * from "./poke.js";
export * from "./connect.js";
export * from "./error-frame.js";
export * from "./frames.js";
export * from "./api.js";
