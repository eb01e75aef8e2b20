/**
 * `hello`: the first frame on a sync socket. It confirms the protocol version
 * and tells the client the room's current epoch. (Room → client frames are
 * checked by hand in `room-frames.ts`, without valibot: see there why.)
 */
export interface Hello {
  type: "hello";
  protocolVersion: number;
  room: string;
  /** 1–128 characters. */
  epoch: string;
}
