import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

/** Opens `count` subscribed plain sockets in a child process (see fanout-child.ts). */
export async function openFanout(host: string, room: string, count: number, source: unknown): Promise<{ close(): Promise<void> }> {
  if (count <= 0) return { close: async () => {} };
  const child = spawn(process.execPath, ["--import", "tsx", path.join(here, "fanout-child.ts"), host, room, String(count), JSON.stringify(source)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      if (out.includes("ready")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`fan-out child exited with ${code}`)));
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.stdin.end();
      }),
  };
}
