/**
 * Mutation outcomes on the wire are bounded like rows: a mutator may return
 * a value of any size and a rejection may carry any `data`, but a frame may
 * not pass `MAX_FRAME_BYTES` (Cloudflare refuses messages over 1 MiB, and
 * the client drops such a frame as `MESSAGE_TOO_LARGE` — with the outcomes
 * in it, so the writes would never settle on that connection).
 *
 * Many outcomes are split across frames by `PokeWriter.end`. One outcome
 * that cannot fit in a frame even alone is sent in its *too-large form*
 * instead, which keeps its `clientSeq` and `status` — the write did run (or
 * was rejected) and that must still reach the writer — and says, with the
 * code `MESSAGE_TOO_LARGE`, what was left out:
 *
 * - `applied`: `result: { truncated: true, error: { code: "MESSAGE_TOO_LARGE", message, data: { bytes } } }`
 *   (the client's frame check admits only `result` on an applied outcome);
 * - `rejected` / `error`: `error: { code: "MESSAGE_TOO_LARGE", message, data: { code, bytes } }`,
 *   `data.code` being the original code (its first 128 characters). A
 *   rejection stays a permanent rejection.
 */
import { utf8Length, type MutationResult } from "../src/protocol/index.js";

/**
 * A rejection (or error) outcome longer than this is recorded in its
 * too-large form: a Durable Object's SQLite refuses values over 2 MB
 * (`SQLITE_TOOBIG`, which would fail the whole push, every time it is
 * retried), and one this long could not be sent whole anyway — well under
 * the frame bound, so what a writer is answered live and on a replay is the
 * same. (Applied results are stored only up to 8 KiB, see mutators.ts.)
 */
export const MAX_RECORDED_REJECTION_BYTES = 800_000;

/** One outcome as JSON, ready to be spliced into a frame, with its UTF-8 length. */
export interface OutcomeText {
  json: string;
  bytes: number;
  /** The outcome the JSON says: the original or its too-large form. */
  outcome: MutationResult;
}

/** The JSON of `outcome`, or of its too-large form when it is longer than `maxBytes`. */
export function boundedOutcome(outcome: MutationResult, maxBytes: number): OutcomeText {
  const json = JSON.stringify(outcome);
  const bytes = utf8Length(json);
  if (bytes <= maxBytes) return { json, bytes, outcome };
  const replaced = tooLargeForm(outcome, bytes);
  const replacedJson = JSON.stringify(replaced);
  return { json: replacedJson, bytes: utf8Length(replacedJson), outcome: replaced };
}

function tooLargeForm(outcome: MutationResult, bytes: number): MutationResult {
  const { clientSeq } = outcome;
  if (outcome.status === "applied") {
    const message = `the result of clientSeq ${clientSeq} (${bytes} bytes as an outcome) is larger than a frame; the write was applied`;
    return { clientSeq, status: "applied", result: { truncated: true, error: { code: "MESSAGE_TOO_LARGE", message, data: { bytes } } } };
  }
  const code = String(outcome.error.code).slice(0, 128);
  const message = `the ${outcome.status === "rejected" ? "rejection" : "error"} of clientSeq ${clientSeq} (code ${code}, ${bytes} bytes) is larger than a frame`;
  return { clientSeq, status: outcome.status, error: { code: "MESSAGE_TOO_LARGE", message, data: { code, bytes } } };
}
