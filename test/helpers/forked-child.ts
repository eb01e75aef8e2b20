import { fork, type ChildProcess } from "node:child_process";

/**
 * A child process spoken to over IPC with typed messages, for load tests and
 * benchmarks that spread sockets over several event loops. The child sends
 * `{ type: "started" }` once ready and `{ type: "failed", message }` when
 * something broke (every pending wait then rejects), and exits on
 * `{ type: "close" }`.
 */
export class ForkedChild<ToChild extends { type: string }, FromChild extends { type: string }> {
  private waiters: Array<{ type: string; match: (m: FromChild) => boolean; resolve: (m: FromChild) => void; reject: (e: Error) => void }> = [];
  private failure: Error | undefined;

  private constructor(
    private readonly proc: ChildProcess,
    private readonly label: string,
  ) {
    proc.on("message", (message: FromChild) => {
      if (message.type === "failed") return this.fail(new Error(`${label}: ${(message as unknown as { message: string }).message}`));
      const at = this.waiters.findIndex((w) => w.type === message.type && w.match(message));
      if (at >= 0) this.waiters.splice(at, 1)[0].resolve(message);
    });
    proc.once("exit", (code) => this.fail(new Error(`${label} exited with ${code}`)));
  }

  /** Forks `script` (TypeScript, run with tsx) and waits for its `started`. */
  static async start<ToChild extends { type: string }, FromChild extends { type: string }>(script: string, label: string): Promise<ForkedChild<ToChild, FromChild>> {
    const proc = fork(script, [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const child = new ForkedChild<ToChild, FromChild>(proc, label);
    await child.next("started" as FromChild["type"], 60_000);
    return child;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  /** The next message of `type` (that `match` accepts), or a rejection after `timeoutMs` or when the child fails. */
  next(type: FromChild["type"], timeoutMs = 60_000, match: (m: FromChild) => boolean = () => true): Promise<FromChild> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no "${type}" from ${this.label} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        type,
        match,
        resolve: (m: FromChild) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Sends `message` and waits for the answer of type `answer`. */
  ask(message: ToChild, answer: FromChild["type"], timeoutMs = 60_000): Promise<FromChild> {
    const reply = this.next(answer, timeoutMs);
    this.proc.send(message);
    return reply;
  }

  close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.proc.kill(), 10_000);
      this.proc.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      this.proc.send({ type: "close" });
    });
  }
}

/** `total` items split over `parts` as evenly as possible: each part's `[first, count]`. */
export function splitEvenly(total: number, parts: number): Array<[first: number, count: number]> {
  const out: Array<[number, number]> = [];
  let first = 0;
  for (let i = 0; i < parts; i++) {
    const count = Math.floor(total / parts) + (i < total % parts ? 1 : 0);
    out.push([first, count]);
    first += count;
  }
  return out;
}
