/**
 * How long a room's socket waits before its next connection attempt.
 *
 * partysocket's own backoff (`min · 1.3^(n-1)`, capped) has no randomness:
 * when a room restarts, every client it dropped retries at the same
 * instants — measured within 4 ms of each other on every wave — so a room
 * with thousands of sockets is hit by synchronized stampedes. "Full jitter"
 * keeps the exponential ceiling and the cap but draws each wait uniformly
 * below the ceiling, which spreads each wave over its whole window.
 */
export interface BackoffBounds {
  /** Ceiling of the first retry. */
  minDelayMs: number;
  /** Cap of every ceiling. */
  maxDelayMs: number;
}

/** Growth of the ceiling per consecutive failed attempt (partysocket's factor, kept). */
export const BACKOFF_GROWTH = 1.3;

/**
 * A connection that stayed up this long was healthy: the next drop starts the
 * backoff over (partysocket's `minUptime`). Shorter lives keep growing it, so a
 * room that accepts and drops at once is not retried in a hot loop.
 */
export const STABLE_CONNECTION_MS = 5_000;

/**
 * The wait before retry number `retry` (1 = the first retry after a drop):
 * uniform in `[0, min(maxDelayMs, minDelayMs · 1.3^(retry-1)))`. `random`
 * returns a number in `[0, 1)` (`Math.random` by default; tests inject one).
 */
export function reconnectDelayMs(retry: number, bounds: BackoffBounds, random: () => number): number {
  if (!(retry >= 1)) return 0;
  const ceiling = Math.min(bounds.maxDelayMs, bounds.minDelayMs * BACKOFF_GROWTH ** (retry - 1));
  const draw = random();
  // A source outside [0, 1) must not turn into a negative or unbounded wait.
  const fraction = Number.isFinite(draw) ? Math.min(Math.max(draw, 0), 1) : 0.5;
  return Math.floor(ceiling * fraction);
}
