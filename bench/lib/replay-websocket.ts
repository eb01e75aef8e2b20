/**
 * A WebSocket class for `LunoraClient` that plays back frames recorded from
 * the real room, so W1 measures exactly the client's work — partysocket's
 * event dispatch, frame validation, poke assembly, the collection's
 * `begin/write/commit` and the live query — without the network or the room
 * in the timing. `deliver()` dispatches a frame synchronously, as the socket's
 * message event would.
 */
export class ReplayWebSocket extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;

  /** The last socket constructed (the benchmark opens one at a time). */
  static last: ReplayWebSocket | undefined;
  /** Frames dispatched right after `open` (the room's `hello`). */
  static onOpenFrames: string[] = [];
  /** Called with each frame the client sends. */
  static onSend: ((socket: ReplayWebSocket, data: string) => void) | undefined;

  readyState = 0;
  binaryType = "arraybuffer";
  bufferedAmount = 0;
  extensions = "";
  protocol = "";
  readonly url: string;

  constructor(url: string | URL) {
    super();
    this.url = String(url);
    ReplayWebSocket.last = this;
    setTimeout(() => {
      this.readyState = 1;
      this.dispatchEvent(new Event("open"));
      for (const frame of ReplayWebSocket.onOpenFrames) this.deliver(frame);
    }, 0);
  }

  deliver(frame: string): void {
    this.dispatchEvent(new MessageEvent("message", { data: frame }));
  }

  send(data: string): void {
    ReplayWebSocket.onSend?.(this, data);
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.dispatchEvent(Object.assign(new Event("close"), { code, reason, wasClean: true })), 0);
  }
}
