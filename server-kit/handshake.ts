/**
 * The handshake of a sync socket: protocol version, authentication, and the
 * identity the socket keeps for life. Refusals are answered on an accepted
 * (never hibernated) socket as an `error` frame plus a close code, because a
 * browser cannot read the status of a failed upgrade.
 */
import { CLOSE_CODES, LunoraError, PROTOCOL_VERSION, QUERY } from "../src/protocol/index.js";
import type { LunoraOptions } from "./definitions.js";
import { MAX_ATTACHMENT_BYTES, attachmentSize, refuse, type SocketAttachment } from "./socket-state.js";

/**
 * Checks an upgrade request and returns the new socket's attachment, or the
 * refusal to answer with. `room` is the object's own name, never client input.
 */
export async function admitSocket<Auth, Env>(request: Request, options: LunoraOptions<Auth, Env>, env: Env, room: string): Promise<SocketAttachment | Response> {
  const url = new URL(request.url);
  const version = Number(url.searchParams.get(QUERY.version));
  if (version !== PROTOCOL_VERSION) {
    return refuse(
      new LunoraError("PROTOCOL_VERSION_MISMATCH", `room speaks protocol ${PROTOCOL_VERSION}, client sent ${url.searchParams.get(QUERY.version)}`, {
        protocolVersion: PROTOCOL_VERSION,
      }),
      CLOSE_CODES.PROTOCOL_VERSION,
    );
  }
  let auth: Auth | null | undefined;
  try {
    auth = options.authenticate ? await options.authenticate(request, env) : ({} as Auth);
  } catch (error) {
    const coded = error instanceof LunoraError ? error : new LunoraError("UNAUTHENTICATED", "authentication failed");
    return refuse(coded, CLOSE_CODES.UNAUTHENTICATED);
  }
  if (auth === null || auth === undefined) {
    return refuse(new LunoraError("UNAUTHENTICATED", "not authenticated"), CLOSE_CODES.UNAUTHENTICATED);
  }
  const expiresAt = (auth as { expiresAt?: unknown }).expiresAt;
  const clientId = url.searchParams.get(QUERY.clientId);
  const attachment: SocketAttachment = {
    v: 2,
    room,
    auth,
    identity: identify(options, auth),
    clientId: clientId && clientId.length <= 128 ? clientId : null,
    subs: [],
  };
  if (typeof expiresAt === "number") attachment.exp = expiresAt;
  if (attachmentSize(attachment) > MAX_ATTACHMENT_BYTES) {
    return refuse(new LunoraError("QUOTA_EXCEEDED", "identity is too large to keep on the socket"), CLOSE_CODES.POLICY);
  }
  return attachment;
}

/** The stable string naming an identity (watermarks are kept per identity). */
export function identify<Auth>(options: LunoraOptions<Auth, any>, auth: Auth): string {
  if (options.identify) return options.identify(auth);
  const record = auth as { userId?: unknown; sub?: unknown };
  // A number and the string of its digits are different users: `5` and "5"
  // must not share watermarks (nor anything else keyed by identity).
  if (typeof record.userId === "string") return `user:${record.userId}`;
  if (typeof record.userId === "number") return `user#${record.userId}`;
  if (typeof record.sub === "string") return `sub:${record.sub}`;
  return `auth:${JSON.stringify(auth)}`;
}
