import * as v from "valibot";
import type { ErrorBody } from "./errors.js";
import { nameSchema } from "./common.js";

/**
 * Writes travel on the socket as ordered batches. `clientId` names the
 * writer's outbox (stable per identity and storage); each mutation carries the
 * next `clientSeq` of that outbox. The room applies a batch in order and keeps
 * one watermark per (identity, clientId): a `clientSeq` at or below it is a
 * replay (answered from the stored outcome, not run again), the next one runs,
 * and anything further is `OUT_OF_ORDER`.
 */
/** The valibot form of {@link ErrorBody}. */
export const errorBodySchema: v.GenericSchema<unknown, ErrorBody> = v.object({
  code: v.string(),
  message: v.string(),
  data: v.optional(v.unknown()),
});

export const mutationSchema = v.strictObject({
  clientSeq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  name: nameSchema,
  args: v.optional(v.unknown()),
});
export type Mutation = v.InferOutput<typeof mutationSchema>;

export const MAX_MUTATIONS_PER_PUSH = 5_000;

export const pushSchema = v.strictObject({
  type: v.literal("push"),
  clientId: nameSchema,
  mutations: v.pipe(v.array(mutationSchema), v.minLength(1), v.maxLength(MAX_MUTATIONS_PER_PUSH)),
});
export type Push = v.InferOutput<typeof pushSchema>;

/**
 * The outcome of one mutation. `applied`: it ran now or earlier (a replay gets
 * the stored outcome). `rejected`: it threw a coded error, which is recorded
 * and final — the watermark moved past it. `error`: nothing was committed
 * (uncoded exception, `OUT_OF_ORDER`); the client retries.
 */
export const mutationResultSchema = v.variant("status", [
  v.strictObject({ clientSeq: v.number(), status: v.literal("applied"), result: v.optional(v.unknown()) }),
  v.strictObject({ clientSeq: v.number(), status: v.literal("rejected"), error: errorBodySchema }),
  v.strictObject({ clientSeq: v.number(), status: v.literal("error"), error: errorBodySchema }),
]);
export type MutationResult = v.InferOutput<typeof mutationResultSchema>;
