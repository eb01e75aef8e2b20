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
export const errorBodySchema: v.GenericSchema<unknown, ErrorBody> = /* @__PURE__ */ v.object({
  code: /* @__PURE__ */ v.string(),
  message: /* @__PURE__ */ v.string(),
  data: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.unknown()),
});

export const mutationSchema = /* @__PURE__ */ v.strictObject({
  clientSeq: /* @__PURE__ */ v.pipe(/* @__PURE__ */ v.number(), /* @__PURE__ */ v.integer(), /* @__PURE__ */ v.minValue(1)),
  name: nameSchema,
  args: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.unknown()),
});
export type Mutation = v.InferOutput<typeof mutationSchema>;

export const MAX_MUTATIONS_PER_PUSH = 5_000;

export const pushSchema = /* @__PURE__ */ v.strictObject({
  type: /* @__PURE__ */ v.literal("push"),
  clientId: nameSchema,
  mutations: /* @__PURE__ */ v.pipe(/* @__PURE__ */ v.array(mutationSchema), /* @__PURE__ */ v.minLength(1), /* @__PURE__ */ v.maxLength(MAX_MUTATIONS_PER_PUSH)),
});
export type Push = v.InferOutput<typeof pushSchema>;

/**
 * The outcome of one mutation. `applied`: it ran now or earlier (a replay gets
 * the stored outcome). `rejected`: it threw a coded error, which is recorded
 * and final — the watermark moved past it. `error`: nothing was committed
 * (uncoded exception, `OUT_OF_ORDER`); the client retries.
 */
export const mutationResultSchema = /* @__PURE__ */ v.variant("status", [
  /* @__PURE__ */ v.strictObject({ clientSeq: /* @__PURE__ */ v.number(), status: /* @__PURE__ */ v.literal("applied"), result: /* @__PURE__ */ v.optional(/* @__PURE__ */ v.unknown()) }),
  /* @__PURE__ */ v.strictObject({ clientSeq: /* @__PURE__ */ v.number(), status: /* @__PURE__ */ v.literal("rejected"), error: errorBodySchema }),
  /* @__PURE__ */ v.strictObject({ clientSeq: /* @__PURE__ */ v.number(), status: /* @__PURE__ */ v.literal("error"), error: errorBodySchema }),
]);
export type MutationResult = v.InferOutput<typeof mutationResultSchema>;
