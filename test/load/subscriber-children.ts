import { fork, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FromChild, SubscriberLog, ToChild } from "./subscriber-protocol.js";

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * Subscriber sockets spread over `count` child processes
 * (subscriber-child.ts): the test process only writes and checks.
 */
export class SubscriberChildren {
  private constructor(private readonly children: Child[]) {}

  static async start(count: number): Promise<SubscriberChildren> {
    return new SubscriberChildren(await Promise.all(Array.from({ length: count }, () => Child.start())));
  }

  /** Opens `total` subscribed sockets, split evenly; `url` has `{token}` where the socket's token goes. */
  async open(url: string, total: number, subscribe: unknown): Promise<void> {
    let first = 0;
    await Promise.all(
      this.children.map((child, i) => {
        const count = Math.floor(total / this.children.length) + (i < total % this.children.length ? 1 : 0);
        const message: ToChild = { type: "open", url, count, firstIndex: first, subscribe };
        first += count;
        return child.ask(message, "opened", 120_000);
      }),
    );
  }

  /** The fewest keys any socket has read, and how many sockets saw a violation. */
  async progress(): Promise<{ minKeys: number; withViolations: number }> {
    const all = (await Promise.all(this.children.map((child) => child.ask({ type: "progress" }, "progress")))) as Array<Extract<FromChild, { type: "progress" }>>;
    return { minKeys: Math.min(...all.map((p) => p.minKeys)), withViolations: all.reduce((sum, p) => sum + p.withViolations, 0) };
  }

  /** Every socket's log, and every delivery's latency (ms) for the keys in `sentAt`. */
  async collect(sentAt: Map<string, number>): Promise<{ subscribers: SubscriberLog[]; latencies: number[] }> {
    const all = (await Promise.all(this.children.map((child) => child.ask({ type: "collect", sentAt: Object.fromEntries(sentAt) }, "collected")))) as Array<
      Extract<FromChild, { type: "collected" }>
    >;
    return { subscribers: all.flatMap((c) => c.subscribers), latencies: all.flatMap((c) => c.latencies) };
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((child) => child.close()));
  }
}

class Child {
  private waiters: Array<{ type: string; resolve: (m: FromChild) => void; reject: (e: Error) => void }> = [];
  private failure: Error | undefined;

  private constructor(private readonly proc: ChildProcess) {
    proc.on("message", (message: FromChild) => {
      if (message.type === "failed") return this.fail(new Error(`subscriber child: ${message.message}`));
      const at = this.waiters.findIndex((w) => w.type === message.type);
      if (at >= 0) this.waiters.splice(at, 1)[0].resolve(message);
    });
    proc.once("exit", (code) => this.fail(new Error(`subscriber child exited with ${code}`)));
  }

  static async start(): Promise<Child> {
    const proc = fork(path.join(here, "subscriber-child.ts"), [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const child = new Child(proc);
    await child.next("started", 60_000);
    return child;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  private next(type: FromChild["type"], timeoutMs: number): Promise<FromChild> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const waiter = {
        type,
        resolve: (m: FromChild) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no "${type}" from a subscriber child within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

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
      this.proc.send({ type: "close" } satisfies ToChild);
    });
  }
}
