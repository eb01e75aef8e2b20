/**
 * Connection status of one room's socket.
 *
 * - `connecting`: a connection attempt is under way, or the socket is open
 *   but the room has not said `hello` yet (subscriptions are not live).
 * - `connected`: the socket is open and the room said `hello`.
 * - `offline`: the socket is closed and waiting to retry, or gave up for
 *   good (protocol version mismatch).
 */
export type RoomStatus = "connecting" | "connected" | "offline";

/**
 * Aggregate status of a {@link LunoraClient}: `idle` while it holds no room,
 * else the worst status among its rooms (`offline` > `connecting` > `connected`).
 */
export type ConnectionStatus = "idle" | RoomStatus;

/** Folds room statuses into the client's aggregate status. */
export function aggregateStatus(rooms: Iterable<RoomStatus>): ConnectionStatus {
  let result: ConnectionStatus = "idle";
  for (const status of rooms) {
    if (status === "offline") return "offline";
    if (status === "connecting") result = "connecting";
    else if (result === "idle") result = "connected";
  }
  return result;
}
