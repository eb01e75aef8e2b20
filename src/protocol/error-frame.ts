import * as v from "valibot";
import { errorBodySchema } from "./errors.js";
import { nameSchema } from "./common.js";

/**
 * `error`: a coded error. With `sub` it concerns that subscription only (the
 * socket and the other subscriptions stay up); without it, the frame the
 * client just sent (malformed, unknown type, too large).
 */
export const errorFrameSchema = v.strictObject({
  type: v.literal("error"),
  sub: v.optional(nameSchema),
  error: errorBodySchema,
});
export type ErrorFrame = v.InferOutput<typeof errorFrameSchema>;
