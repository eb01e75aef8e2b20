import { PartySocket } from "partysocket";
import {
  ACK_EVERY_CHARS,
  CLOSE_CODES,
  LunoraError,
  PONG,
  PROTOCOL_VERSION,
  QUERY,
  encodeFrame,
  parseRoomFrame,
  type ClientFrame,
  type MutationResult,
  type RoomFrame,
  type Source,
  type Subset,
} from "../protocol/index.js";
import { STABLE_CONNECTION_MS, reconnectDelayMs, type BackoffBounds } from "./backoff.js";
import { readToken } from "./identity.js";
import { Keepalive, unrefTimer } from "./keepalive.js";
import { reportListenerError } from "./listeners.js";
import type { LunoraClientOptions } from "./lunora-client.js";
import { DEFAULT_POKE_BUFFER_LIMITS, PokeBuffer, type CompletePoke, type PokeStep } from "./poke-buffer.js";
import type { RoomStatus } from "./status.js";
import { rowOpsOf, type PokeGroup, type PokeUpdate, type SubscriptionHandler } from "./subscription.js";

/**
 * The largest room frame the client parses. Rooms keep frames under
 * `MAX_FRAME_BYTES` (900,000); Cloudflare caps a WebSocket message at 1 MiB, so
 * anything larger cannot be a frame a room sent on purpose.
 */
const MAX_ROOM_FRAME_BYTES = 1024 * 1024;

/** `readyState` of an open socket (the WebSocket constant, identical in every implementation). */
const OPEN = 1;

/**
 * Frames partysocket may queue while a socket is not open. The client itself
 * only sends on an open socket (subscriptions are re-sent on every open), so
 * this bounds the queue against future callers rather than filling it.
 */
export const MAX_ENQUEUED_MESSAGES = 1_000;

// Defaults of the client's options (see `LunoraClientOptions`).
const DEFAULT_MIN_DELAY_MS = 250;
const DEFAULT_MAX_DELAY_MS = 10_000;
/** partysocket's own default, kept: long enough for a TLS handshake on a slow mobile network. */
const DEFAULT_CONNECT_TIMEOUT_MS = 4_000;
const DEFAULT_PING_INTERVAL_MS = 25_000;

/** Everything a connection needs from its client. */
export interface RoomConnectionOptions {
  /**
   * The app's options of the client, read as given (defaults applied here):
   * the socket's `host`, `protocol`, `WebSocket` and timeouts, `auth` (read
   * before every attempt), `reconnect` and `limits`.
   */
  client: LunoraClientOptions;
  party: string;
  room: string;
  clientId: string;
  /** The client's `tokenFingerprint` with its `identify` (remembers the last token's). */
  fingerprint(token: string | undefined): Promise<string>;
  /** The identity of the token this connection attempt presents (called before it connects). */
  onIdentity(identity: string): void;
  onStatusChange(): void;
  onError(error: LunoraError): void;
  onMutationResults(results: MutationResult[]): void;
}

interface SubscriptionEntry {
  id: string;
  source: Source;
  /** The subset given at subscribe time (the handler's `subset()` takes precedence). */
  subset: Subset | undefined;
  handler: SubscriptionHandler;
  /**
   * Set when the rows of this subscription can no longer be trusted (a poke
   * for it was dropped, or its handler failed). It was subscribed again
   * without cursor (which unbinds it: ops for its old group no longer reach
   * it); until a poke resets it, pokes for it are skipped — they may be
   * deltas against state the client never received.
   */
  awaitingReset: boolean;
  /**
   * Set when the client unsubscribed it on this socket but keeps it (its
   * snapshot is over the poke bound): the answer to a subscribe sent before
   * must not bind it, the room stops serving it once it reads the unsubscribe.
   */
  unsubscribed: boolean;
}

/**
 * One room's socket: a `PartySocket` that reconnects with backoff, plus the
 * subscriptions that live on it. It reads room frames (validated, never
 * trusted), reassembles pokes and hands each complete poke to the
 * subscriptions' handlers in one synchronous loop.
 */
export class RoomConnection {
  readonly party: string;
  readonly room: string;
  /**
   * Holders keeping this socket open without a subscription (the write
   * outbox, through `LunoraClient.retainRoom`). The client closes the
   * connection when it has neither.
   */
  holds = 0;
  readonly #options: RoomConnectionOptions;
  readonly #backoffBounds: BackoffBounds;
  /** Jitter source in `[0, 1)` for the reconnect backoff. */
  readonly #random: () => number;
  readonly #socket: PartySocket;
  readonly #subs = new Map<string, SubscriptionEntry>();
  readonly #pokes: PokeBuffer;
  readonly #keepalive: Keepalive;
  #status: RoomStatus = "connecting";
  #epoch: string | undefined;
  #closed = false;
  /** Set once the room refused our protocol version (the error every subscription is told): the socket stays closed. */
  #failed: LunoraError | undefined;
  #versionMismatchReported = false;
  /** The token sent with the current/last connection attempt. */
  #presentedToken: string | undefined;
  #tokenPresented = false;
  /** The token the room last refused (4001), while no connection has succeeded since. */
  #refused: { token: string | undefined } | undefined;
  #refusedRepeats = 0;
  /** Characters received since the last `ack`. */
  #unacked = 0;
  /** Fingerprint of the token of the current/last connection attempt. */
  #presentedIdentity: string | undefined;
  /** The identity the subscriptions' rows and cursors were read under (set by `hello`). */
  #rowsIdentity: string | undefined;
  /** Set when the app switched identity: this socket's frames belong to the old one and are ignored until it reopens. */
  #stale = false;
  /** Identity switches announced to this connection, and the latest one's identity (see `#connectionQuery`). */
  #announcements = 0;
  #announced: string | undefined;
  #authDelay: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | undefined;
  /** The next attempt connects at once (first connection, or a reconnect the app asked for). */
  #connectNow = true;
  /** Consecutive retries since the last stable connection: the backoff's exponent. */
  #retries = 0;
  /** When the room last said `hello` on the current socket. */
  #connectedAt: number | undefined;
  /** The auth provider is throwing: reported once, and every subscription told, per streak. */
  #authFailure: LunoraError | undefined;

  constructor(options: RoomConnectionOptions) {
    const { client, party, room } = options;
    const { reconnect, limits } = client;
    this.#options = options;
    this.party = party;
    this.room = room;
    this.#backoffBounds = { minDelayMs: reconnect?.minDelayMs ?? DEFAULT_MIN_DELAY_MS, maxDelayMs: reconnect?.maxDelayMs ?? DEFAULT_MAX_DELAY_MS };
    this.#random = reconnect?.random ?? Math.random;
    // A bind answering a subscribe the client has dropped since binds nothing.
    this.#pokes = new PokeBuffer(
      {
        maxChars: limits?.maxPokeChars ?? DEFAULT_POKE_BUFFER_LIMITS.maxChars,
        maxOps: limits?.maxPokeOps ?? DEFAULT_POKE_BUFFER_LIMITS.maxOps,
      },
      (id) => this.#subs.get(id)?.unsubscribed === false,
    );
    this.#keepalive = new Keepalive(
      client.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
      (ping) => this.sendFrame(ping),
      () => this.#socket.reconnect(),
    );
    this.#socket = new PartySocket({
      host: client.host,
      party,
      room,
      protocol: client.protocol,
      WebSocket: client.WebSocket,
      // A function, not an object: partysocket calls it before every attempt,
      // which is how a refreshed token reaches the reconnect.
      query: () => this.#connectionQuery(),
      // The backoff is ours (jittered, see backoff.ts), awaited inside the
      // query function: partysocket's own delay is switched off.
      minReconnectionDelay: 0,
      maxReconnectionDelay: 0,
      connectionTimeout: client.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      maxEnqueuedMessages: MAX_ENQUEUED_MESSAGES,
      // A room that speaks another protocol version will refuse every retry.
      shouldReconnectOnClose: (event) => event.code !== CLOSE_CODES.PROTOCOL_VERSION,
    });
    // Binary frames are not part of the protocol and are refused; ArrayBuffer is
    // the one binary type every implementation supports (`ws` before 8.18 has
    // no Blob and would hand over Node Buffers).
    this.#socket.binaryType = "arraybuffer";
    this.#socket.addEventListener("open", this.#onOpen);
    this.#socket.addEventListener("message", this.#onMessage);
    this.#socket.addEventListener("close", this.#onClose);
    this.#socket.addEventListener("error", this.#onSocketError);
  }

  get status(): RoomStatus {
    return this.#status;
  }

  /**
   * Offline for a reason of this room's own, not the network's: the room
   * refused the token, or the auth provider is throwing. Reported through
   * `onError`; it does not drag the aggregate status of a client whose other
   * rooms work (see `aggregateStatus`). A protocol version mismatch is not
   * such a reason: the app itself needs an update, and the aggregate says so.
   */
  get refusing(): boolean {
    return this.#refused !== undefined || this.#authFailure !== undefined;
  }

  /** The room's epoch from its last `hello`. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  get subscriptionCount(): number {
    return this.#subs.size;
  }

  add(id: string, source: Source, handler: SubscriptionHandler, subset?: Subset): void {
    const entry: SubscriptionEntry = { id, source, subset, handler, awaitingReset: false, unsubscribed: false };
    this.#subs.set(id, entry);
    if (this.#failed) {
      this.#notify(entry, this.#failed);
      return;
    }
    // Joining a streak of auth failures: this collection would otherwise wait
    // in `loading` until the provider recovers.
    if (this.#authFailure) this.#notify(entry, this.#authFailure);
    this.#sendSubscribe(entry);
  }

  remove(id: string): void {
    if (!this.#subs.delete(id)) return;
    // At once: ops for its group that the room sends before it reads the
    // unsubscribe reach nobody (or only the subscriptions still bound to it).
    this.#pokes.unbind(id);
    // A socket that is not open has no server-side state for it: the next
    // connection subscribes only what is still in the map.
    this.#sendIfOpen({ type: "unsubscribe", id });
  }

  /** Sends `subscribe` again; with `reset`, without cursor and skipping pokes until the room resets it. */
  resubscribe(id: string, options: { reset: boolean }): void {
    const entry = this.#subs.get(id);
    if (!entry) return;
    // Without cursor the room answers with a reset; until then an answer to
    // an earlier subscribe (a resume from a cursor the handler has dropped
    // since) would be deltas against rows it no longer has.
    if (options.reset || entry.handler.cursor() === undefined) entry.awaitingReset = true;
    // The room binds it again in the poke answering this subscribe; until
    // then nothing for its old binding may reach it.
    this.#pokes.unbind(id);
    this.#sendSubscribe(entry);
  }

  /** Whether a connection attempt has presented a token (or none) yet. */
  get tokenPresented(): boolean {
    return this.#tokenPresented;
  }

  /**
   * The app's identity is now `identity`. If this socket was opened as
   * someone else, its subscriptions drop their rows and cursors at once, its
   * frames are ignored from now on, and it reconnects with the new token.
   */
  switchIdentity(identity: string): void {
    this.#announcements++;
    this.#announced = identity;
    // Already switching (stale until it reopens): one reconnect is enough.
    if (this.#stale || this.#presentedIdentity === undefined || this.#presentedIdentity === identity) return;
    this.#dropRowsOfOtherIdentity(identity);
    this.#stale = true;
    this.reconnect();
  }

  /** Rows and cursors read under one identity are never kept for another. */
  #dropRowsOfOtherIdentity(identity: string): void {
    if (this.#rowsIdentity === undefined || identity === this.#rowsIdentity) return;
    this.#rowsIdentity = undefined;
    this.#pokes.clear();
    for (const entry of this.#subs.values()) {
      entry.awaitingReset = false;
      try {
        entry.handler.onIdentityChange?.();
      } catch (thrown) {
        reportListenerError(thrown);
      }
    }
  }

  /**
   * Fingerprint of the token of the current/last connection attempt: set
   * together with {@link tokenPresented}, before the attempt connects.
   */
  get presentedIdentity(): string | undefined {
    return this.#presentedIdentity;
  }

  /**
   * Sends an encoded frame if the socket is open; returns whether it was
   * sent. Never queues in partysocket: writes are re-sent by the outbox on
   * the next connection instead.
   */
  sendFrame(text: string): boolean {
    if (this.#closed || this.#socket.readyState !== OPEN) return false;
    this.#socket.send(text);
    return true;
  }

  /** Drops the socket and connects again (the token is read again). */
  reconnect(): void {
    if (this.#closed || this.#failed) return;
    // Asked for (identity switch, network back): no backoff wait, and an
    // attempt already waiting out its backoff goes now.
    this.#connectNow = true;
    this.#retries = 0;
    this.#cancelAuthDelay();
    this.#socket.reconnect();
  }

  /** Closes the socket for good. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#keepalive.stop();
    this.#pokes.clear();
    this.#cancelAuthDelay();
    this.#subs.clear();
    this.#socket.close(1000, "client closed");
    this.#socket.removeEventListener("open", this.#onOpen);
    this.#socket.removeEventListener("message", this.#onMessage);
    this.#socket.removeEventListener("close", this.#onClose);
    this.#socket.removeEventListener("error", this.#onSocketError);
  }

  // ---- connection lifecycle ------------------------------------------------

  /** Waits out the jittered backoff before a retry; the first attempt and asked-for reconnects go at once. */
  async #backoff(): Promise<void> {
    if (this.#connectNow) {
      this.#connectNow = false;
      return;
    }
    const delay = reconnectDelayMs(++this.#retries, this.#backoffBounds, this.#random);
    if (delay > 0) await this.#waitBeforeRetry(delay);
  }

  async #connectionQuery(): Promise<Record<string, string | undefined>> {
    await this.#backoff();
    const announcements = this.#announcements;
    let token: string | undefined;
    try {
      token = await readToken(this.#options.client.auth);
    } catch (error) {
      const coded = error instanceof LunoraError ? error : new LunoraError("UNAUTHENTICATED", String(error));
      if (!this.#closed && !this.#authFailure) {
        // Like a refused token: the app hears of it once per streak, and every
        // collection is told (it marks itself ready instead of loading forever).
        this.#authFailure = coded;
        this.#options.onError(coded);
        for (const entry of this.#subs.values()) this.#notify(entry, coded);
      }
      this.#setStatus("offline");
      // partysocket turns a rejected query into an error event and calls the query again (after our backoff).
      throw coded;
    }
    this.#authFailure = undefined;
    if (this.#refused && this.#refused.token === token) {
      // The provider returned the token the room just refused: retrying at once
      // would loop. Tell the app (once per streak) and wait, doubling each time.
      this.#refusedRepeats++;
      if (this.#refusedRepeats === 1) {
        const error = new LunoraError("UNAUTHENTICATED", `room "${this.room}" refused the token and auth returned it again`);
        this.#options.onError(error);
        for (const entry of this.#subs.values()) this.#notify(entry, error);
      }
      const { minDelayMs, maxDelayMs } = this.#backoffBounds;
      await this.#waitBeforeRetry(Math.min(maxDelayMs, minDelayMs * 2 ** this.#refusedRepeats));
    }
    // Rows and cursors read under one identity are never kept for another:
    // before connecting as someone else, every subscription drops its rows
    // and cursor, so the room sends a fresh snapshot for the new identity.
    const identity = await this.#options.fingerprint(token);
    // The app announced another identity while this attempt was reading its
    // token (refreshAuth() during the read): the token is older than the
    // announcement. partysocket's reconnect() cannot stop an attempt already
    // past its delay, so read again rather than connect as the previous user.
    if (this.#announcements !== announcements && this.#announced !== identity && !this.#closed) return this.#connectionQuery();
    this.#dropRowsOfOtherIdentity(identity);
    // Set first: the client then switches every *other* socket of the old identity.
    this.#presentedIdentity = identity;
    this.#options.onIdentity(identity);
    this.#presentedToken = token;
    this.#tokenPresented = true;
    if (!this.#closed) this.#setStatus("connecting");
    return {
      [QUERY.version]: String(PROTOCOL_VERSION),
      [QUERY.token]: token,
      [QUERY.clientId]: this.#options.clientId,
    };
  }

  /**
   * Flow control: the room bounds what it buffers for this socket by what we
   * have acknowledged, so tell it every {@link ACK_EVERY_CHARS} received.
   */
  #acknowledge(chars: number): void {
    this.#unacked += chars;
    if (this.#unacked < ACK_EVERY_CHARS) return;
    const received = this.#unacked;
    this.#unacked = 0;
    this.#sendIfOpen({ type: "ack", received });
  }

  #onOpen = (): void => {
    if (this.#closed) return;
    this.#stale = false;
    this.#unacked = 0;
    this.#pokes.clear();
    this.#keepalive.start();
    for (const entry of this.#subs.values()) this.#sendSubscribe(entry);
  };

  #onClose = (event: CloseEvent): void => {
    this.#keepalive.stop();
    // A connection that lived long enough was healthy: the backoff starts over.
    if (this.#connectedAt !== undefined && Date.now() - this.#connectedAt >= STABLE_CONNECTION_MS) this.#retries = 0;
    this.#connectedAt = undefined;
    // A poke cut off by the disconnect is never applied; the cursor did not move,
    // so the resume sends it again.
    this.#pokes.clear();
    if (this.#closed) return;
    if (event.code === CLOSE_CODES.UNAUTHENTICATED) this.#refuseToken();
    if (event.code === CLOSE_CODES.PROTOCOL_VERSION) {
      this.#failVersion();
      return;
    }
    this.#setStatus("offline");
  };

  #onSocketError = (event: Event): void => {
    if (this.#closed) return;
    // Browsers hide the status of a refused upgrade; `ws` (Node) reports it in
    // the message ("Unexpected server response: 401"). A room answers an
    // upgrade without identity with 401, which is the same as close 4001.
    const message = (event as { message?: unknown }).message;
    if (typeof message === "string" && /\b401\b/.test(message)) this.#refuseToken();
    if (this.#socket.readyState !== OPEN) this.#setStatus("offline");
  };

  #refuseToken(): void {
    if (this.#refused?.token !== this.#presentedToken) this.#refusedRepeats = 0;
    this.#refused = { token: this.#presentedToken };
  }

  /** The room speaks protocol `roomVersion` (`undefined`: it closed with 4002 without saying which). */
  #failVersion(roomVersion?: number): void {
    const error = new LunoraError(
      "PROTOCOL_VERSION_MISMATCH",
      `room "${this.room}" speaks ${roomVersion === undefined ? "another protocol version" : `protocol ${roomVersion}`}, client speaks ${PROTOCOL_VERSION}`,
      { clientVersion: PROTOCOL_VERSION },
    );
    this.#failed = error;
    this.#socket.close(1000, "protocol version mismatch");
    this.#keepalive.stop();
    if (!this.#versionMismatchReported) {
      this.#versionMismatchReported = true;
      this.#options.onError(error);
    }
    for (const entry of this.#subs.values()) this.#notify(entry, error);
    this.#setStatus("offline");
  }

  #waitBeforeRetry(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#authDelay = undefined;
        resolve();
      }, ms);
      unrefTimer(timer);
      this.#authDelay = { timer, resolve };
    });
  }

  #cancelAuthDelay(): void {
    if (!this.#authDelay) return;
    clearTimeout(this.#authDelay.timer);
    this.#authDelay.resolve();
    this.#authDelay = undefined;
  }

  #setStatus(status: RoomStatus): void {
    if (this.#failed && status !== "offline") return;
    if (this.#status === status) return;
    this.#status = status;
    this.#options.onStatusChange();
  }

  // ---- inbound frames ------------------------------------------------------

  #onMessage = (event: MessageEvent): void => {
    if (this.#closed || this.#stale) return;
    this.#keepalive.noteFrame();
    const data: unknown = event.data;
    if (data === PONG) return;
    if (typeof data === "string") this.#acknowledge(data.length);
    const parsed = parseRoomFrame(data as string | ArrayBuffer, MAX_ROOM_FRAME_BYTES);
    if (!parsed.ok) {
      // An unreadable frame in the middle of a poke may have been one of its
      // parts; applying the rest would be a silent gap.
      if (this.#pokes.isOpen) this.#handlePokeStep(this.#pokes.abort(parsed.error));
      else this.#options.onError(parsed.error);
      return;
    }
    this.#handleFrame(parsed.frame, typeof data === "string" ? data.length : 0);
  };

  #handleFrame(frame: RoomFrame, chars: number): void {
    switch (frame.type) {
      case "hello":
        if (frame.protocolVersion !== PROTOCOL_VERSION) {
          this.#failVersion(frame.protocolVersion);
          return;
        }
        this.#epoch = frame.epoch;
        this.#rowsIdentity = this.#presentedIdentity;
        this.#refused = undefined;
        this.#refusedRepeats = 0;
        this.#connectedAt = Date.now();
        this.#setStatus("connected");
        return;
      case "poke": {
        // A whole poke in one frame: the same steps as start + part + end
        // (the buffer reads each step's fields from the one frame).
        let step = this.#pokes.start(frame);
        if (step.kind === "pending") step = this.#pokes.part(frame, chars);
        if (step.kind !== "pending") this.#handlePokeStep(step);
        // Ended also when dropped above: its outcomes are still delivered.
        this.#handlePokeStep(this.#pokes.end(frame));
        return;
      }
      case "pokeStart":
        this.#handlePokeStep(this.#pokes.start(frame));
        return;
      case "pokePart":
        this.#handlePokeStep(this.#pokes.part(frame, chars));
        return;
      case "pokeEnd":
        this.#handlePokeStep(this.#pokes.end(frame));
        return;
      case "error": {
        const error = LunoraError.fromBody(frame.error);
        if (frame.sub === undefined) {
          if (error.code === "PROTOCOL_VERSION_MISMATCH") {
            // The close with 4002 follows; report the room's own message once.
            if (this.#versionMismatchReported) return;
            this.#versionMismatchReported = true;
          }
          this.#options.onError(error);
          return;
        }
        // The room ends a subscription it cannot serve mid-poke (a row larger
        // than a frame) with an error for it: the open poke is incomplete, so
        // it is dropped; the other subscriptions it covered start over.
        if (this.#pokes.covers(frame.sub)) {
          const step = this.#pokes.abort(error);
          if (step.kind === "dropped") {
            for (const id of step.subs) if (id !== frame.sub) this.resubscribe(id, { reset: true });
          }
        }
        // It is no longer served: later ops for its group are not for it.
        this.#pokes.unbind(frame.sub);
        const entry = this.#subs.get(frame.sub);
        // An error for a subscription that is gone concerns nobody.
        if (entry) this.#notify(entry, error);
        return;
      }
    }
  }

  #handlePokeStep(step: PokeStep): void {
    switch (step.kind) {
      case "pending":
        return;
      case "ignored":
        // The outcomes of a dropped poke: its data comes with the resets, but
        // nothing else would ever answer these pushes.
        if (step.mutations && step.mutations.length > 0) this.#options.onMutationResults(step.mutations);
        return;
      case "complete":
        this.#applyPoke(step.poke);
        return;
      case "dropped": {
        const { error, resets } = step;
        const overBound = error.code === "QUOTA_EXCEEDED";
        this.#options.onError(error);
        for (const id of step.subs) {
          const entry = this.#subs.get(id);
          if (!entry) continue;
          // A bound hit will likely repeat on the snapshot: tell the collection so
          // it stops waiting. A protocol violation is the room's bug; the reset
          // heals it without bothering the app.
          if (overBound) this.#notify(entry, error);
          if (overBound && resets?.includes(id)) {
            // Its snapshot does not fit this client's bound: asking again would
            // fetch it again, forever. It stays failed (told to the collection)
            // and ignores pokes until a later connection subscribes it anew.
            entry.awaitingReset = true;
            entry.unsubscribed = true;
            this.#pokes.unbind(id);
            this.#sendIfOpen({ type: "unsubscribe", id });
          } else this.resubscribe(id, { reset: true });
        }
        return;
      }
    }
  }

  /**
   * Applies a complete poke: every covered subscription in one synchronous
   * loop (no reader can observe the poke half applied), then the mutation
   * results it carries, so a write's confirmation is never seen before its data.
   *
   * Subscriptions whose handlers share a {@link PokeGroup} are handed theirs
   * together, in one call, where the group's first subscription comes in the
   * poke: one collection's subsets then change in one transaction
   * (invariant 3 within a collection).
   */
  #applyPoke(poke: CompletePoke): void {
    const { pokeId, resets, resolved, cursor, mutations } = poke;
    const identity = this.#rowsIdentity;
    // Each handler, or each group once, with its updates in poke order (a Map
    // keeps the order in which each target first appears).
    const targets = new Map<SubscriptionHandler | PokeGroup, Array<{ entry: SubscriptionEntry; update: PokeUpdate }>>();
    for (const { id, keyColumn, blocks } of poke.subs) {
      const entry = this.#subs.get(id);
      const reset = resets.has(id);
      // Unsubscribed meanwhile, or waiting for the reset that answers its resubscribe.
      if (!entry || (entry.awaitingReset && !reset)) continue;
      entry.awaitingReset = false;
      let ops: PokeUpdate["ops"] | undefined;
      const update: PokeUpdate = {
        reset,
        blocks,
        keyColumn,
        // Most handlers (collections) read the blocks; objects per op only for those that ask.
        get ops() {
          return (ops ??= rowOpsOf(id, keyColumn, blocks));
        },
        cursor,
        identity,
        resolved: resolved.get(id),
      };
      const target = entry.handler.pokeGroup ?? entry.handler;
      let members = targets.get(target);
      if (!members) targets.set(target, (members = []));
      members.push({ entry, update });
    }
    // Every collection of the poke commits first, then all publish: no
    // reader sees one collection changed and another not yet (a row moving
    // from one view to another is never in neither).
    const deferrals: Array<{ publish(): void; discard(): void }> = [];
    for (const [target, members] of targets) {
      // Nothing for it in this poke (it only moves to the cursor): nothing to publish.
      if (!members.some(({ update }) => update.reset || update.blocks.length > 0)) continue;
      try {
        const deferral = target.deferPublication?.();
        if (deferral) deferrals.push(deferral);
      } catch {
        // no deferral: that collection publishes at its own commit
      }
    }
    const failed: Array<{ entry: SubscriptionEntry; error: unknown }> = [];
    try {
      for (const members of targets.values()) {
        const group = members[0].entry.handler.pokeGroup;
        if (group) {
          try {
            group.applyPokes(members.map(({ entry, update }) => ({ handler: entry.handler, update })));
          } catch (error) {
            // The group's rows are in an unknown state: every member starts over.
            for (const { entry } of members) failed.push({ entry, error });
          }
          continue;
        }
        for (const { entry, update } of members) {
          try {
            entry.handler.applyPoke(update);
          } catch (error) {
            failed.push({ entry, error });
          }
        }
      }
    } finally {
      for (const deferral of deferrals) deferral.publish();
    }
    if (mutations && mutations.length > 0) this.#options.onMutationResults(mutations);
    const reported = new Set<unknown>();
    for (const { entry, error } of failed) {
      // The handler's rows are in an unknown state: start it over from a snapshot.
      if (error instanceof LunoraError && error.code === "PROTOCOL_ERROR") {
        // The room's bug (a patch for a row the subscription does not hold):
        // the reset heals it; the app hears of it (once, also when a group of
        // subscriptions failed together) like of any other violation.
        if (!reported.has(error)) this.#options.onError(new LunoraError("PROTOCOL_ERROR", `poke "${pokeId}": ${error.message}`));
        reported.add(error);
      } else {
        const message = error instanceof Error ? error.message : String(error);
        this.#notify(entry, new LunoraError("INTERNAL", `applying poke "${pokeId}" failed: ${message}`));
      }
      this.resubscribe(entry.id, { reset: true });
    }
  }

  #notify(entry: SubscriptionEntry, error: LunoraError): void {
    try {
      entry.handler.onError(error);
    } catch (thrown) {
      reportListenerError(thrown);
    }
  }

  // ---- outbound frames -----------------------------------------------------

  #sendSubscribe(entry: SubscriptionEntry): void {
    if (this.#socket.readyState !== OPEN) return; // the open handler subscribes everything
    entry.unsubscribed = false;
    const cursor = entry.awaitingReset ? undefined : entry.handler.cursor();
    // Read now, not at add(): a limited subset resumes with its resolved predicate.
    const subset = entry.handler.subset ? entry.handler.subset() : entry.subset;
    const frame: ClientFrame = {
      type: "subscribe",
      id: entry.id,
      source: entry.source,
      ...(cursor ? { cursor: { seq: cursor.seq, epoch: cursor.epoch } } : {}),
      ...(subset ? { subset } : {}),
    };
    this.#sendIfOpen(frame);
  }

  #sendIfOpen(frame: ClientFrame): void {
    this.sendFrame(encodeFrame(frame));
  }
}
