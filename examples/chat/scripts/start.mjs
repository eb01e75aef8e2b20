#!/usr/bin/env node
/**
 * `npm start` (after `npm run example:build`): the chat example on
 * http://127.0.0.1:8787 with `wrangler dev` — local workerd, no Cloudflare
 * account, room state kept in `.lunora/state` at the repository root.
 *
 * Environment: PORT (default 8787), LUNORA_STATE (default .lunora/state).
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const port = process.env.PORT ?? "8787";
const state = path.resolve(root, process.env.LUNORA_STATE ?? ".lunora/state");

console.log(`\nLunora chat → http://127.0.0.1:${port}  (room state in ${path.relative(root, state) || state}; Ctrl-C to stop)\n`);

const wrangler = spawn(
  path.join(root, "node_modules/.bin/wrangler"),
  [
    "dev",
    "--config",
    path.join(root, "examples/chat/wrangler.jsonc"),
    "--ip",
    "127.0.0.1",
    "--port",
    port,
    "--persist-to",
    state,
    "--show-interactive-dev-session=false",
  ],
  { cwd: root, stdio: "inherit", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => wrangler.kill(signal));
}
wrangler.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
