import * as v from "valibot";
import { nameSchema } from "./common.js";

/**
 * `hello`: the first frame on a sync socket. It confirms the protocol version
 * and tells the client the room's current epoch.
 */
export const helloSchema = v.strictObject({
  type: v.literal("hello"),
  protocolVersion: v.number(),
  room: v.string(),
  epoch: nameSchema,
});
export type Hello = v.InferOutput<typeof helloSchema>;
