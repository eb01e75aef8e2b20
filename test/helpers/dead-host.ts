import net from "node:net";

/** `127.0.0.1:PORT` where nothing listens: a client pointed at it is offline (every connect is refused). */
export async function deadHost(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}
