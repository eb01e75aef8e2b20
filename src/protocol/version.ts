/**
 * The wire protocol version. The client sends it as the `v` query parameter
 * when it opens a socket; a room that speaks another version answers with an
 * `error` frame (`PROTOCOL_VERSION_MISMATCH`) and closes the socket with
 * {@link CLOSE_CODES.PROTOCOL_VERSION}, so an old tab stops reconnecting
 * instead of misreading frames.
 *
 * History:
 * - 1: first version (subscribe/unsubscribe, hello, poke frames, errors, push).
 * - 2: exact row values (BLOB as `{ $blob: hex }`, every bit of a REAL,
 *   unsafe integers refused); snapshots streamed under `ack` flow control in
 *   one poke that lists every subscription of the socket; close code 4010.
 * - 3: on-demand subsets (`subscribe.subset`, `subsets` in reset pokes).
 * - 4: grouped ops (`[group, kind, ...items]` blocks, `bind` in the poke that
 *   starts a subscription, frames shared by sockets reading the same groups)
 *   and column patches (`"u"` blocks).
 */
export const PROTOCOL_VERSION = 4;

/**
 * Close codes the room uses. 4000–4999 is the application range; the runtime
 * rejects reserved codes (1004–1006, 1015) passed to `close()`.
 */
export const CLOSE_CODES = {
  /** No identity, or the identity's token expired. The client refreshes its token before reconnecting. */
  UNAUTHENTICATED: 4001,
  /** The client speaks another protocol version. The client does not reconnect. */
  PROTOCOL_VERSION: 4002,
  /** The room closed this socket because it violated a bound repeatedly. */
  POLICY: 4008,
  /**
   * The client fell too far behind in reading (more than the room's bound of
   * unacknowledged poke text). It reconnects and resumes from its cursors.
   */
  SLOW_CONSUMER: 4009,
  /**
   * The room lost the state of a poke it was streaming (the object was
   * evicted mid-snapshot, or a new epoch began under it). The client
   * reconnects and resumes from its cursors.
   */
  INTERRUPTED: 4010,
} as const;

/**
 * A client acknowledges the poke text it has received with an `ack` frame at
 * least every this many characters, so the room can bound what it buffers
 * for a slow reader.
 */
export const ACK_EVERY_CHARS = 256 * 1024;

/** The literal a client sends as a keepalive; the runtime answers {@link PONG} without waking the object. */
export const PING = "ping";
/** The runtime's auto-response to {@link PING}. */
export const PONG = "pong";

/** Query parameter names of the socket URL. */
export const QUERY = {
  version: "v",
  token: "token",
  clientId: "cid",
} as const;

/**
 * Frames (one WebSocket message) never exceed this many bytes of UTF-8 JSON.
 * Cloudflare caps a WebSocket message at 1 MiB; 900,000 leaves headroom for
 * the frame envelope. Bigger pokes are split into more `pokePart` frames.
 */
export const MAX_FRAME_BYTES = 900_000;

/** An inbound (client → room) frame larger than this is refused with `MESSAGE_TOO_LARGE`. */
export const MAX_INBOUND_FRAME_BYTES = 1_000_000;
