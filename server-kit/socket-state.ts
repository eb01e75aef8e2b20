import { utf8Length, type Source } from "../src/protocol/index.js";

/**
 * What a sync socket must remember across hibernation. It is stored with
 * `serializeAttachment`, which the runtime caps at 16 KiB, so it holds only
 * the identity and each subscription's source and validated args — the
 * resolved predicates are recomputed on wake.
 */
export interface SocketAttachment {
  v: 1;
  room: string;
  auth: unknown;
  identity: string;
  clientId: string | null;
  /** Token expiry (ms since epoch), if `authenticate` returned one. */
  exp?: number;
  subs: Record<string, { source: Source; args?: unknown }>;
}

/** The runtime's cap on `serializeAttachment`, minus headroom for the structured-clone envelope. */
export const MAX_ATTACHMENT_BYTES = 16 * 1024 - 512;

export function attachmentSize(attachment: SocketAttachment): number {
  return utf8Length(JSON.stringify(attachment));
}

/** The attachment of a sync socket, or null for sockets that are not ours. */
export function readAttachment(ws: WebSocket): SocketAttachment | null {
  try {
    const attachment = ws.deserializeAttachment() as SocketAttachment | null;
    return attachment && attachment.v === 1 ? attachment : null;
  } catch {
    return null;
  }
}

/**
 * Closes a socket without throwing: `close()` throws if the socket is already
 * closing, and a code in the reserved range (1005, 1006, 1015) is rejected.
 */
export function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    // already closed or closing
  }
}

export function sendQuietly(ws: WebSocket, frame: string): boolean {
  try {
    ws.send(frame);
    return true;
  } catch {
    return false; // the peer went away mid-flush; its close handler cleans up
  }
}
