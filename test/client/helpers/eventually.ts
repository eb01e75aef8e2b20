import { vi } from "vitest";

/**
 * Retries `check` (an assertion) until it passes. The timeout is generous on
 * purpose: tests wait on conditions, never on durations.
 */
export function eventually<T>(check: () => T | Promise<T>, timeoutMs = 5_000): Promise<T> {
  return vi.waitFor(check, { timeout: timeoutMs, interval: 5 });
}
