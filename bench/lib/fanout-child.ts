/**
 * Child process holding W2's fan-out sockets, so the frames they receive are
 * handled outside the measuring process's event loop (as other devices
 * would). argv: host room count sourceJSON. Prints "ready" once every socket
 * has its snapshot, and "received N" when asked ("count" on stdin); exits on
 * stdin end.
 */
import { openRawSubscribers } from "./raw-subscribers.js";

const [host, room, count, source] = process.argv.slice(2);
const fan = await openRawSubscribers(host, room, Number(count), JSON.parse(source));
process.stdout.write("ready\n");
process.stdin.resume();
process.stdin.on("end", async () => {
  await fan.close();
  process.exit(0);
});
