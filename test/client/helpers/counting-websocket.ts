import { WebSocket } from "ws";

/** The constructor shape partysocket calls: `new WS(url)` or `new WS(url, protocols)`. */
export type WebSocketClass = new (url: string | URL, protocols?: string | string[]) => WebSocket;

/**
 * A `ws` WebSocket class that counts inbound messages, so a test can wait
 * until the client has *processed* the frames the room sent (the counter's
 * listener is added in the constructor, before partysocket's, and the
 * client handles a frame synchronously within the same dispatch).
 */
export function countingWebSocket(): { WebSocket: WebSocketClass; received: () => number } {
  let received = 0;
  class CountingWebSocket extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.addEventListener("message", () => {
        received++;
      });
    }
  }
  return { WebSocket: CountingWebSocket, received: () => received };
}
