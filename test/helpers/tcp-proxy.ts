import net from "node:net";

/**
 * A loopback TCP proxy in front of the local worker, to take a client
 * offline (connections cut, new ones refused) without stopping the room, and
 * to add one-way latency (benchmarks).
 */
export class TcpProxy {
  private readonly server: net.Server;
  private readonly connections = new Set<net.Socket>();
  private online = true;
  /** Connections accepted so far (each WebSocket is one). */
  accepted = 0;

  private constructor(
    private readonly targetPort: number,
    private readonly delayMs: number,
  ) {
    this.server = net.createServer((client) => this.onConnection(client));
  }

  static async start(targetPort: number, { delayMs = 0 }: { delayMs?: number } = {}): Promise<TcpProxy> {
    const proxy = new TcpProxy(targetPort, delayMs);
    await new Promise<void>((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  private onConnection(client: net.Socket): void {
    if (!this.online) {
      client.destroy();
      return;
    }
    this.accepted++;
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    this.connections.add(client);
    this.connections.add(upstream);
    const pipe = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk) => {
        if (this.delayMs === 0) to.write(chunk);
        else setTimeout(() => to.writable && to.write(chunk), this.delayMs);
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.connections.delete(client);
      this.connections.delete(upstream);
    };
    client.on("close", close);
    upstream.on("close", close);
    client.on("error", close);
    upstream.on("error", close);
  }

  /** Cuts every open connection now (a dropped socket); new connections are accepted. */
  drop(): void {
    for (const socket of this.connections) socket.destroy();
  }

  get isOnline(): boolean {
    return this.online;
  }

  /** Cuts every open connection and refuses new ones until {@link setOnline}(true). */
  setOnline(online: boolean): void {
    this.online = online;
    if (!online) for (const socket of this.connections) socket.destroy();
  }

  async stop(): Promise<void> {
    this.setOnline(false);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
