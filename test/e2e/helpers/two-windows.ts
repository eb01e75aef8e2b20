/**
 * The setting of every e2e test: the chat example under `wrangler dev`, one
 * Chromium, and two users side by side — alice and bob, each in their own
 * browser context (own IndexedDB, own service worker).
 *
 * Alice reaches the server through a loopback TCP proxy so that she can
 * really go offline. `context.setOffline(true)` alone makes the browser
 * report offline and fail new requests and new sockets, but Chromium leaves
 * established WebSockets open (playwright#4910); a real network loss drops
 * them. `goOffline()` does both: offline emulation, and the proxy cuts her
 * connections and refuses new ones.
 */
import type { Browser } from "playwright-core";
import { TcpProxy } from "../../helpers/tcp-proxy.js";
import { launchChromium, openChatWindow, type ChatWindow } from "./browser.js";
import { startChatServer, type ChatServer } from "./chat-server.js";

export interface TwoWindows {
  server: ChatServer;
  browser: Browser;
  alice: ChatWindow;
  bob: ChatWindow;
  /** Alice loses the network. */
  goOffline(): Promise<void>;
  /** Alice has the network back. */
  goOnline(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTwoWindows(): Promise<TwoWindows> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error) => console.warn("e2e cleanup:", error));
  };
  try {
    const server = await startChatServer();
    cleanups.push(() => server.stop());
    const proxy = await TcpProxy.start(server.port);
    cleanups.push(() => proxy.stop());
    const browser = await launchChromium();
    cleanups.push(() => browser.close());

    const alice = await openChatWindow(browser, `http://${proxy.host}`, "alice");
    const bob = await openChatWindow(browser, server.url, "bob");
    return {
      server,
      browser,
      alice,
      bob,
      goOffline: async () => {
        await alice.context.setOffline(true);
        proxy.setOnline(false);
      },
      goOnline: async () => {
        proxy.setOnline(true);
        await alice.context.setOffline(false);
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** POSTs an announcement through the room's own route (not through Lunora). */
export async function announce(server: ChatServer, channelId: string, text: string): Promise<void> {
  const response = await fetch(`${server.url}/rooms/${encodeURIComponent(channelId)}/announce`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text }),
  });
  if (response.status !== 201) throw new Error(`announce answered ${response.status}: ${await response.text()}`);
}
