/**
 * Builds the React client into `examples/chat/dist`, the Worker's static
 * assets. `@lunora/db/*` resolves through the package's own `exports` (the
 * repository root is `@lunora/db`), i.e. to `dist/` from `npm run build`, as
 * it would from node_modules in an app of yours.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

/**
 * Emits `client/service-worker.js` as `/sw.js` with the list of files of this
 * build (the app shell) and a version hash of them.
 */
function appShellServiceWorker(): Plugin {
  return {
    name: "lunora-chat:app-shell-service-worker",
    apply: "build",
    generateBundle(_options, bundle) {
      // The page is cached as "/" (how it is requested); assets carry content hashes.
      const assets = Object.keys(bundle).filter((file) => !file.endsWith(".map") && file !== "index.html");
      const files = ["/", ...assets.map((file) => `/${file}`).sort()];
      const version = createHash("sha256").update(files.join("\n")).digest("hex").slice(0, 12);
      const source = readFileSync(here("./client/service-worker.js"), "utf8")
        .replace("__SHELL_FILES__", JSON.stringify(files))
        .replace("__SHELL_VERSION__", JSON.stringify(version));
      this.emitFile({ type: "asset", fileName: "sw.js", source });
    },
  };
}

export default defineConfig({
  root: here("./client"),
  // The repo's own .env files and public dir are not the app's.
  envDir: false,
  publicDir: false,
  plugins: [appShellServiceWorker()],
  build: {
    outDir: here("./dist"),
    emptyOutDir: true,
    sourcemap: true,
    target: "es2022",
    // React, TanStack DB and the Lunora client in one chunk: fine for a demo.
    chunkSizeWarningLimit: 800,
    rolldownOptions: {
      onwarn(warning, warn) {
        // "use client" directives in @tanstack/react-db mean nothing in a client-only bundle.
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
    },
  },
  server: {
    // `vite dev` for UI work: the Worker (`npm start`) serves sync and the room's routes.
    proxy: {
      "/parties": { target: "ws://127.0.0.1:8787", ws: true },
      "/rooms": { target: "http://127.0.0.1:8787", ws: true },
    },
  },
});
