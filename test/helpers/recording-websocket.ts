import { WebSocket } from "ws";

export interface FrameLog {
  /** Every text frame received, in order, across reconnects. */
  frames: string[];
  /** Row ops received in poke and pokePart frames: the items of their op blocks (protocol 4: `[group, kind, ...items]`). */
  rowOps(): number;
  /** How many pokes listed a subscription in `resets`. */
  resets(): number;
  /** Frames of a given type sent by the client. */
  sent: string[];
}

/**
 * A `ws` class that records what the client receives and sends, so tests can
 * count row ops (no snapshot on resume) and round trips (push frames).
 */
export function recordingWebSocket(): { WebSocket: new (url: string | URL, protocols?: string | string[]) => WebSocket; log: FrameLog } {
  const log: FrameLog = {
    frames: [],
    sent: [],
    rowOps: () =>
      log.frames.reduce(
        (count, frame) =>
          frame.startsWith('{"type":"pokePart"') || frame.startsWith('{"type":"poke"')
            ? (JSON.parse(frame) as { ops: unknown[][] }).ops.reduce((items, block) => items + block.length - 2, count)
            : count,
        0,
      ),
    resets: () => log.frames.filter((frame) => /^\{"type":"poke(Start)?"/.test(frame) && frame.includes('"resets"')).length,
  };
  class RecordingWebSocket extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.addEventListener("message", (event) => {
        if (typeof event.data === "string") log.frames.push(event.data);
      });
    }
    override send(data: any, ...rest: any[]): void {
      if (typeof data === "string") log.sent.push(data);
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  return { WebSocket: RecordingWebSocket, log };
}
