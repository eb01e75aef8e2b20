/**
 * The seam with `@tanstack/offline-transactions` 1.0.53: the only places the
 * outbox goes past the library's public API, each with its reason. See
 * docs/writes.md ("The seam with @tanstack/offline-transactions").
 *
 * Public API used elsewhere: `OfflineExecutor` (`waitForInit`,
 * `isOfflineEnabled`, `waitForTransactionCompletion`, `resolveTransaction`,
 * `rejectTransaction`, `registerRestorationTransaction`, `removeFromOutbox`),
 * `OutboxManager` (exported) and the `LeaderElection`, `OnlineDetector`,
 * `StorageAdapter` interfaces. Parking a write releases its live
 * transaction with the public `resolveTransaction` before it registers the
 * overlay, so it needs no private member either.
 */
import type { OfflineExecutor, OfflineTransaction, OutboxManager } from "@tanstack/offline-transactions";

/** PRIVATE in 1.0.53: the executor's `TransactionExecutor` (its `execute` schedules a record and runs the queue). */
interface RunningQueue {
  execute(record: OfflineTransaction): Promise<void>;
}

function runningQueueOf(executor: OfflineExecutor): RunningQueue | undefined {
  const queue = (executor as unknown as { executor?: RunningQueue | null }).executor;
  return queue && typeof queue.execute === "function" ? queue : undefined;
}

/**
 * Stores `record` (with the public `OutboxManager` over the executor's
 * storage) and runs it in the leader's queue — what the library's own
 * `OfflineTransaction` does through its private `persistTransaction`.
 *
 * Lunora does not go through `createOfflineTransaction` because that path
 * decides "durable or not" when the transaction is *created* (before the
 * executor has initialised every write would silently be non-durable), while
 * a write's optimistic rows must appear in the same task as the call that
 * made it. Split so the caller learns when the record is in storage: running
 * the queue can take as long as the network is away.
 *
 * Private member used: `executor.execute` (the `TransactionExecutor`).
 */
export async function persistOfflineTransaction(
  executor: OfflineExecutor,
  records: OutboxManager,
  record: OfflineTransaction,
  onStored: () => void,
): Promise<void> {
  await executor.waitForInit();
  const queue = runningQueueOf(executor);
  if (!executor.isOfflineEnabled || !queue) {
    // Not the leader (or no storage): the caller sends it outside the queue.
    executor.resolveTransaction(record.id, undefined);
    onStored();
    return;
  }
  await records.add(record);
  onStored();
  await queue.execute(record);
}
