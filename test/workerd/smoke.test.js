// @ts-check
// Runs INSIDE workerd through @cloudflare/vitest-pool-workers (project
// "workerd" in the root vitest.config.ts). JavaScript with JSDoc types on
// purpose: the root tsconfig (DOM + Node types) would not resolve
// `cloudflare:*` modules; test/workerd/tsconfig.json checks this file with
// the Workers types instead (`npx tsc -p test/workerd/tsconfig.json`).
import { runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { expect, test } from "vitest";

/** @typedef {import("../fixtures/smoke/worker").Env} SmokeEnv */
/** @typedef {import("../fixtures/smoke/worker").Counter} Counter */

test("the smoke Worker and its SQLite Durable Object run inside workerd", async () => {
  // `exports` is typed per project through `Cloudflare.GlobalProps`; a cast keeps this file self-contained.
  const main = /** @type {{ default: Fetcher }} */ (/** @type {unknown} */ (exports));
  const res = await main.default.fetch("http://smoke/incr?name=pool");
  expect(await res.json()).toEqual({ value: 1 });

  const counter = /** @type {SmokeEnv} */ (/** @type {unknown} */ (env)).COUNTER;
  const stub = counter.get(counter.idFromName("pool"));
  const value = await runInDurableObject(stub, (/** @type {Counter} */ instance) => instance.get());
  expect(value).toBe(1);
});
