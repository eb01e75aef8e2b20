/**
 * Every error Lunora reports on the wire or through a public callback has one
 * of these stable codes. `docs/errors.md` lists each with whether it is
 * permanent (the write rolls back / the subscription stays failed) or
 * transient (retried).
 */
export const ERROR_CODES = [
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "SHAPE_NOT_FOUND",
  "INVALID_ARGS",
  "UNKNOWN_MUTATOR",
  "OUT_OF_ORDER",
  "CONFLICT",
  "CONSTRAINT_VIOLATION",
  "MESSAGE_TOO_LARGE",
  "PROTOCOL_ERROR",
  "PROTOCOL_VERSION_MISMATCH",
  "IDENTITY_CHANGED",
  "QUOTA_EXCEEDED",
  "NOT_FOUND",
  "INTERNAL",
  "STORAGE_FAILURE",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes a writer must retry rather than roll back. Everything else is permanent. */
export const TRANSIENT_CODES: ReadonlySet<string> = new Set<ErrorCode>(["INTERNAL", "OUT_OF_ORDER"]);

/**
 * `{ code, message, data? }` — the error value carried on the wire. Its
 * valibot schema (`errorBodySchema`, for frames the room parses) lives in
 * `error-frame.ts`, so this module — imported by every client file — stays
 * free of valibot.
 */
export interface ErrorBody {
  code: string;
  message: string;
  data?: unknown;
}

/**
 * The error class both halves throw and report. Mutators throw it to reject a
 * write with a code (`throw new LunoraError("CONFLICT", "already taken")`);
 * clients receive it in `onError` / `onWriteRejected`.
 */
export class LunoraError extends Error {
  readonly code: string;
  readonly data: unknown;

  constructor(code: ErrorCode | (string & {}), message: string, data?: unknown) {
    super(message);
    this.name = "LunoraError";
    this.code = code;
    this.data = data;
  }

  /** The wire form. */
  toBody(): ErrorBody {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }

  static fromBody(body: ErrorBody): LunoraError {
    return new LunoraError(body.code, body.message, body.data);
  }
}

export function isLunoraError(error: unknown): error is LunoraError {
  return error instanceof LunoraError;
}
