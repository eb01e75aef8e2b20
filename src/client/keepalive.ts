import { PING } from "../protocol/index.js";

/**
 * Detects a dead socket. A half-open TCP connection (laptop lid closed, NAT
 * entry expired, network switched) fires no `close` for minutes, so the client
 * sends the {@link PING} literal every interval — the room's runtime answers
 * `pong` through its WebSocket auto-response without waking the Durable
 * Object — and treats two intervals without any inbound frame as a dead socket.
 */
export class Keepalive {
  readonly #intervalMs: number;
  readonly #sendPing: () => void;
  readonly #onDead: () => void;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastFrameAt = 0;

  /** `intervalMs <= 0` disables it. */
  constructor(intervalMs: number, sendPing: (ping: string) => void, onDead: () => void) {
    this.#intervalMs = intervalMs;
    this.#sendPing = () => sendPing(PING);
    this.#onDead = onDead;
  }

  /** Call when the socket opens. */
  start(): void {
    this.stop();
    if (!(this.#intervalMs > 0)) return;
    this.#lastFrameAt = Date.now();
    this.#timer = setInterval(() => {
      if (Date.now() - this.#lastFrameAt >= 2 * this.#intervalMs) {
        this.stop();
        this.#onDead();
      } else {
        this.#sendPing();
      }
    }, this.#intervalMs);
    unrefTimer(this.#timer);
  }

  /** Call on every inbound frame, including `pong`. */
  noteFrame(): void {
    this.#lastFrameAt = Date.now();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * In Node an interval keeps the process alive; a keepalive must not be the
 * reason a script never exits. Browsers return a number and have no `unref`.
 */
export function unrefTimer(timer: unknown): void {
  (timer as { unref?: () => void } | undefined)?.unref?.();
}
