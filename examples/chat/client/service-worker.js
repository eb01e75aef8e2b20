/**
 * App-shell service worker: caches the built app (HTML, JS, CSS) so a cold
 * launch with no network still renders; the data comes from IndexedDB (the
 * query cache and the outbox), not from here.
 *
 * It never touches Lunora's sync traffic (`/parties/*`, WebSockets) or the
 * room's own routes (`/rooms/*`): Lunora owns reconnects, replay and
 * read-your-writes, and a cached answer there would fight it.
 *
 * `vite.config.ts` emits this file as `/sw.js` with the two constants below
 * filled in from the build: the shell's files and a version derived from
 * them, so each build installs a fresh cache and drops the old one.
 */
/// <reference lib="webworker" />

/** @type {string[]} */
const SHELL_FILES = __SHELL_FILES__;
/** @type {string} */
const SHELL_VERSION = __SHELL_VERSION__;
const CACHE = `lunora-chat-shell-${SHELL_VERSION}`;

/** Paths that always go to the network, untouched. */
const PASS_THROUGH = [/^\/parties\//, /^\/rooms\//];

const sw = /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self));

sw.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL_FILES))
      .then(() => sw.skipWaiting()),
  );
});

sw.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key.startsWith("lunora-chat-shell-") && key !== CACHE).map((key) => caches.delete(key))))
      .then(() => sw.clients.claim()),
  );
});

sw.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== sw.location.origin) return;
  if (PASS_THROUGH.some((pattern) => pattern.test(url.pathname))) return;
  if (request.headers.get("Upgrade")?.toLowerCase() === "websocket") return;

  if (request.mode === "navigate") {
    // The page: the network when it answers (a deploy shows up at once), else the cached shell.
    event.respondWith(
      fetch(request)
        .then((response) => {
          if (response.ok && url.pathname === "/") {
            const copy = response.clone();
            event.waitUntil(caches.open(CACHE).then((cache) => cache.put("/", copy)));
          }
          return response;
        })
        .catch(async () => (await caches.match("/", { cacheName: CACHE })) ?? Response.error()),
    );
    return;
  }
  // Build assets have content hashes in their names: the cached copy is the right one.
  event.respondWith(caches.match(request, { cacheName: CACHE }).then((hit) => hit ?? fetch(request)));
});
