/**
 * Rules the Worker and the browser share (plain values, safe to bundle on
 * both sides; everything else of the Worker reaches the client as types only).
 */

/** The room that holds the app-wide tables `channels` and `users`; every channel has a room of its own. */
export const LOBBY = "lobby";

/** User names double as (demo) tokens and appear in URLs, so they are kept to these characters. */
export const USER_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/i;
