/**
 * The seam with `@tanstack/offline-transactions` 1.0.53. The outbox uses only
 * its public API: `OfflineExecutor` (`waitForInit`, `isOfflineEnabled`,
 * `resolveTransaction`, `rejectTransaction`, `registerRestorationTransaction`,
 * `removeFromOutbox`, `peekOutbox`), the exported `OutboxManager`, and the
 * `LeaderElection`, `OnlineDetector` and `StorageAdapter` interfaces with
 * `beforeRetry`. See docs/writes.md ("The seam with
 * @tanstack/offline-transactions").
 *
 * Division of labour: the library keeps the durable records and, when a tab
 * becomes leader (at start or by promotion), loads them, restores their
 * optimistic rows and runs them with backoff. A write made in this session
 * never enters the library's running queue: the outbox stores its record
 * here and sends it itself, like a follower tab's writes, and removes the
 * record once it is settled. (The library's own path for a new write,
 * `createOfflineTransaction`, decides "durable or not" when the transaction
 * is created — before the executor has initialised every write would
 * silently be non-durable — and a write's optimistic rows must appear in the
 * same task as the call that made it.)
 */
import type { OfflineExecutor, OfflineTransaction, OutboxManager } from "@tanstack/offline-transactions";

/**
 * Stores `record` among the durable records when this tab leads the queue
 * (so a reload, or the next leader if this tab goes away, replays it).
 * Resolves `true` once stored, `false` when this tab does not lead (the
 * caller sends it anyway); rejects when storage fails.
 */
export async function storeOfflineRecord(executor: OfflineExecutor, records: OutboxManager, record: OfflineTransaction): Promise<boolean> {
  await executor.waitForInit();
  if (!executor.isOfflineEnabled) return false;
  await records.add(record);
  return true;
}
