import { LunoraError } from "../protocol/index.js";

/**
 * Where the client gets its token: a fixed string, `null` for anonymous, or
 * a function that is called before every connection attempt (so a refreshed
 * token is picked up on reconnect).
 */
export type AuthProvider =
  | string
  | null
  | (() => string | null | undefined | Promise<string | null | undefined>);

/** The identity of a client without a token. */
export const ANONYMOUS_IDENTITY = "anonymous";

/**
 * Reads the current token. An empty string counts as no token. A provider
 * that throws is reported as `UNAUTHENTICATED` (the caller decides whether to
 * retry), never as a bare exception.
 */
export async function readToken(auth: AuthProvider | undefined): Promise<string | undefined> {
  if (auth === undefined || auth === null) return undefined;
  let token: string | null | undefined;
  try {
    token = typeof auth === "function" ? await auth() : auth;
  } catch (cause) {
    throw new LunoraError("UNAUTHENTICATED", `auth provider failed: ${describe(cause)}`, { cause: describe(cause) });
  }
  if (token !== null && token !== undefined && typeof token !== "string") {
    throw new LunoraError("UNAUTHENTICATED", "auth provider must return a string, null or undefined");
  }
  return token ? token : undefined;
}

/**
 * Names the identity a token belongs to, so that two tokens of the same user
 * (a refresh) count as one identity. Return a stable user key, e.g. the
 * `sub` claim of a JWT. Without it, every distinct token is its own identity.
 */
export type IdentifyToken = (token: string) => string | Promise<string>;

/**
 * The identity fingerprint of a token: lowercase SHA-256 hex of the user key
 * `identify` names (of the token itself without it), or
 * {@link ANONYMOUS_IDENTITY}. Cached reads, queued writes and synced rows are
 * stamped with it, so it must be stable for an identity and must not reveal
 * the token.
 */
export async function tokenFingerprint(token: string | undefined, identify?: IdentifyToken): Promise<string> {
  if (token === undefined) return ANONYMOUS_IDENTITY;
  let key = token;
  if (identify) {
    try {
      key = `identity:${await identify(token)}`;
    } catch (cause) {
      throw new LunoraError("UNAUTHENTICATED", `identify failed: ${describe(cause)}`);
    }
  }
  // The outbox asks before every send: a digest is a hop to another thread
  // (≈ 0.35 ms of a write's latency in Node), for an answer that only
  // changes with the key. The last key's digest is kept (the key is the
  // token, or what `identify` named, which this page already holds).
  if (lastDigest?.key === key) return lastDigest.hex;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  let hex = "";
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, "0");
  lastDigest = { key, hex };
  return hex;
}

/** The last key {@link tokenFingerprint} hashed, and its digest. */
let lastDigest: { key: string; hex: string } | undefined;

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
