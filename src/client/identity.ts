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
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  let hex = "";
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

/**
 * {@link tokenFingerprint} for one client, remembering the last token's
 * fingerprint: the outbox asks before every send, and a digest is a hop to
 * another thread (≈ 0.35 ms of a write's latency in Node) for an answer that
 * only changes with the token. Kept per client (it goes with the client)
 * and forgotten when there is no token, so a signed-out page holds no
 * token here.
 */
export function fingerprinter(identify?: IdentifyToken): (token: string | undefined) => Promise<string> {
  let last: { token: string; identity: Promise<string> } | undefined;
  return (token) => {
    if (token === undefined) {
      last = undefined;
      return Promise.resolve(ANONYMOUS_IDENTITY);
    }
    if (last?.token === token) return last.identity;
    const identity = tokenFingerprint(token, identify);
    const entry = { token, identity };
    last = entry;
    // A failed `identify` is not remembered: the next call asks again.
    identity.catch(() => {
      if (last === entry) last = undefined;
    });
    return identity;
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
