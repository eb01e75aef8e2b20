/**
 * The typing indicator: the room's own WebSocket feature, which existed before
 * Lunora and has nothing to do with sync. It uses partysocket's reconnecting
 * WebSocket directly on `/rooms/:channel/typing`.
 */
import { WebSocket as ReconnectingWebSocket } from "partysocket";
import { useEffect, useRef, useState } from "react";

/** How long "x is typing…" stays up after the last keystroke event. */
const TYPING_VISIBLE_MS = 3_000;
/** At most one "typing" frame per this interval. */
const TYPING_THROTTLE_MS = 1_000;

/** Who else is typing in `channelId`, whether the typing socket is up, and a function to call on each keystroke. */
export function useTyping(channelId: string, userId: string): { typing: string[]; connected: boolean; notifyTyping: (started: boolean) => void } {
  const [typing, setTyping] = useState<string[]>([]);
  const [connected, setConnected] = useState(false);
  const socket = useRef<ReconnectingWebSocket | null>(null);
  const lastSent = useRef(0);

  useEffect(() => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/rooms/${encodeURIComponent(channelId)}/typing?user=${encodeURIComponent(userId)}`;
    const ws = new ReconnectingWebSocket(url, [], { maxReconnectionDelay: 10_000 });
    socket.current = ws;
    const timers = new Map<string, ReturnType<typeof setTimeout>>();
    ws.addEventListener("open", () => setConnected(true));
    ws.addEventListener("close", () => setConnected(false));
    ws.addEventListener("message", (event) => {
      let frame: { type?: unknown; user?: unknown };
      try {
        frame = JSON.parse(String(event.data));
      } catch {
        return;
      }
      if (frame.type !== "typing" || typeof frame.user !== "string") return;
      const user = frame.user;
      clearTimeout(timers.get(user));
      setTyping((current) => (current.includes(user) ? current : [...current, user]));
      timers.set(
        user,
        setTimeout(() => {
          timers.delete(user);
          setTyping((current) => current.filter((u) => u !== user));
        }, TYPING_VISIBLE_MS),
      );
    });
    return () => {
      for (const timer of timers.values()) clearTimeout(timer);
      ws.close();
      socket.current = null;
      setTyping([]);
      setConnected(false);
    };
  }, [channelId, userId]);

  /** Call on each keystroke; `started` when the draft was empty before it (always announced, never throttled). */
  const notifyTyping = (started: boolean) => {
    const now = Date.now();
    if ((!started && now - lastSent.current < TYPING_THROTTLE_MS) || socket.current?.readyState !== WebSocket.OPEN) return;
    lastSent.current = now;
    socket.current.send("typing");
  };

  return { typing, connected, notifyTyping };
}
