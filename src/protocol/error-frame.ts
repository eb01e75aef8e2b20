import type { ErrorBody } from "./errors.js";

/**
 * `error`: a coded error. With `sub` it concerns that subscription only (the
 * socket and the other subscriptions stay up); without it, the frame the
 * client just sent (malformed, unknown type, too large). Checked by
 * `room-frames.ts`.
 */
export interface ErrorFrame {
  type: "error";
  sub?: string;
  error: ErrorBody;
}
