import type { StandardSchemaV1 } from "@standard-schema/spec";
import { LunoraError } from "../src/protocol/errors.js";

/**
 * Validates a value with any Standard Schema (valibot, zod, arktype, …).
 * Failing input is `INVALID_ARGS` with the issues (messages and paths only)
 * in `data`, so nothing of the schema's internals reaches the client.
 */
export async function validateWithSchema<S extends StandardSchemaV1>(
  schema: S | undefined,
  value: unknown,
  what: string,
): Promise<StandardSchemaV1.InferOutput<S>> {
  if (schema === undefined) return value as StandardSchemaV1.InferOutput<S>;
  let result = schema["~standard"].validate(value);
  if (result instanceof Promise) result = await result;
  if (result.issues) {
    const issues = result.issues.slice(0, 10).map((issue) => ({
      message: String(issue.message).slice(0, 200),
      path: issue.path?.map((segment) => String(typeof segment === "object" ? segment.key : segment)),
    }));
    throw new LunoraError("INVALID_ARGS", `invalid ${what}: ${issues[0]?.message ?? "validation failed"}`, { issues });
  }
  return result.value as StandardSchemaV1.InferOutput<S>;
}
