/**
 * Runs the chat example exactly as `npm start` does — `wrangler dev` on the
 * example's wrangler.jsonc, serving the built client as static assets — on a
 * free port, with room state in a fresh temporary directory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const EXAMPLE_DIR = path.join(REPO_ROOT, "examples/chat");

/** How long wrangler may take to print "Ready on" (bundling + workerd start; a cold CI machine is slow). */
const READY_TIMEOUT_MS = 90_000;

export interface ChatServer {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** Everything wrangler printed so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

/** Fails early, with the command to run, when the builds the example needs are missing. */
export function assertExampleBuilt(): void {
  const missing = [path.join(REPO_ROOT, "dist/server-kit.js"), path.join(EXAMPLE_DIR, "dist/index.html"), path.join(EXAMPLE_DIR, "dist/sw.js")].filter(
    (file) => !existsSync(file),
  );
  if (missing.length > 0) {
    throw new Error(`the chat example is not built (missing ${missing.join(", ")}): run \`npm run example:build\` first (\`npm run test:e2e\` does)`);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function startChatServer(): Promise<ChatServer> {
  assertExampleBuilt();
  const persistDir = await mkdtemp(path.join(tmpdir(), "lunora-chat-e2e-"));
  const port = await freePort();
  const inspectorPort = await freePort();
  const child = spawn(
    path.join(REPO_ROOT, "node_modules/.bin/wrangler"),
    [
      "dev",
      "--config",
      path.join(EXAMPLE_DIR, "wrangler.jsonc"),
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(inspectorPort),
      "--persist-to",
      persistDir,
      "--show-interactive-dev-session=false",
      "--log-level",
      "warn",
    ],
    {
      cwd: REPO_ROOT,
      // Its own process group, so stop() ends wrangler and the workerd it started.
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", NO_COLOR: "1", FORCE_COLOR: "0" },
    },
  );
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));

  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopProcessGroup(child);
    await rm(persistDir, { recursive: true, force: true });
  };
  try {
    await waitUntilServing(url, child, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, port, output: () => output, stop };
}

/** Polls the server until it answers (wrangler's "Ready on" line comes before the assets are served). */
async function waitUntilServing(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}:\n${output()}`);
    try {
      const response = await fetch(url + "/", { signal: AbortSignal.timeout(2_000) });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`wrangler dev did not serve ${url} within ${READY_TIMEOUT_MS} ms:\n${output()}`);
}

async function stopProcessGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    return; // already gone
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }, 5_000);
  await exited;
  clearTimeout(timer);
}
