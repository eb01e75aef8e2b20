import { defineConfig } from "tsup";

// Every public entry point is built with declarations. Peers stay external so
// the app's bundler dedupes them (two copies of @tanstack/db break its
// transaction stack).
export default defineConfig({
  entry: {
    index: "src/index.ts",
    collections: "src/collections/index.ts",
    mutators: "src/mutators/index.ts",
    react: "src/react/index.ts",
    "server-kit": "server-kit/index.ts",
    testing: "src/testing/index.ts",
  },
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "es2022",
  splitting: true,
  treeshake: true,
  external: [/^@tanstack\//, "partysocket", "react", "cloudflare:workers", "miniflare", "esbuild", "valibot"],
});
