/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. Default 15000 ms. */
  timeoutMs?: number;
  /** Poll interval. Default 10 ms. */
  intervalMs?: number;
  /** What is being waited for; goes into the timeout error. */
  message?: string;
}

/**
 * Poll `predicate` until it returns a truthy value (which is returned) or
 * the timeout passes. A predicate that throws counts as "not yet"; its last
 * error is reported in the timeout error, so a failing `expect(...)` inside
 * the predicate shows up as the reason.
 *
 * @example
 * await waitFor(() => collection.size === 3, { message: "3 rows synced" });
 * const row = await waitFor(async () => (await db.get(id)) ?? false);
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  { timeoutMs = 15_000, intervalMs = 10, message }: WaitForOptions = {},
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const started = Date.now();
  let attempts = 0;
  let lastError: unknown;
  let lastValue: unknown;
  for (;;) {
    attempts++;
    try {
      const value = await predicate();
      if (value) return value as Exclude<T, false | null | undefined | 0 | "">;
      lastValue = value;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() - started >= timeoutMs) break;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const what = message ?? predicate.toString().replace(/\s+/g, " ").slice(0, 200);
  const reason =
    lastError !== undefined
      ? `last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`
      : `last value: ${safeString(lastValue)}`;
  throw new Error(`waitFor timed out after ${timeoutMs} ms (${attempts} attempts) waiting for: ${what}; ${reason}`, {
    cause: lastError,
  });
}

function safeString(value: unknown): string {
  try {
    return typeof value === "string" ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    return String(value);
  }
}
