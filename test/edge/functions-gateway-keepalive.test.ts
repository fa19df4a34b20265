// The local functions gateway keeps an idle keep-alive socket as long as a platform front end does
// (about a minute), not Node's 5 s: a caller whose next request on a kept socket comes a few seconds
// later, as a busy client's does, must get an answer, not "other side closed" (npm run bench:load
// saw 53 such failures in 20 s with 200 clients before this). Covers: a second request sent 6 s
// after the first on the same TCP connection is answered, and the answer announces the timeout.
// The gateway's own connections to its workers are kept alive too (a new TCP connection per request
// cost about a millisecond, npm run bench:edge): requests in a row share one, an idle one is closed
// after WORKER_IDLE_SOCKET_MS, and a kept connection the worker closed as the request went out is
// retried on a new one with the body replayed (a worker that drops a fresh connection still gives 502).
import { createHash } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FunctionsServer } from "../../scripts/lib/functions-server.ts";
import { forward, WORKER_IDLE_SOCKET_MS, workerAgent } from "../../scripts/lib/functions-server/gateway.ts";
import { serveFunctionsProject, type FunctionsProject } from "../helpers/functions-project.ts";

const BOOT_TIMEOUT_MS = 120_000;
const IDLE_MS = 6_000;

/** Sends raw HTTP/1.1 requests on one socket; resolves each answer's head once its body is in. */
class RawConnection {
  private buffer = "";
  private waiting: ((head: string) => void) | null = null;
  closed = false;
  constructor(private readonly socket: net.Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      const end = this.buffer.indexOf("\r\n\r\n");
      const length = Number(/content-length: (\d+)/i.exec(this.buffer)?.[1] ?? -1);
      if (end !== -1 && length >= 0 && this.buffer.length >= end + 4 + length) {
        const head = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 4 + length);
        this.waiting?.(head);
      }
    });
    socket.on("close", () => {
      this.closed = true;
      this.waiting?.("closed");
    });
    socket.on("error", () => undefined);
  }
  request(pathname: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      if (this.closed) return resolve("closed");
      this.socket.write(`GET ${pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
    });
  }
}

describe("functions gateway keep-alive", () => {
  let project: FunctionsProject;
  let server: FunctionsServer;

  beforeAll(async () => {
    project = await serveFunctionsProject({ hello: `Deno.serve(() => new Response("hi"));` });
    server = project.server;
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await project?.remove();
  });

  it("answers a request sent on a kept socket after a few idle seconds", async () => {
    const port = Number(new URL(server.url).port);
    const socket = net.connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    const conn = new RawConnection(socket);
    try {
      const first = await conn.request("/functions/v1/hello");
      expect(first).toMatch(/^HTTP\/1\.1 200/);
      expect(first).toMatch(/^keep-alive: timeout=65$/im);
      await new Promise((r) => setTimeout(r, IDLE_MS));
      expect(conn.closed).toBe(false);
      expect(await conn.request("/functions/v1/hello")).toMatch(/^HTTP\/1\.1 200/);
    } finally {
      socket.destroy();
    }
  }, 30_000);
});

describe("the gateway's connections to its workers", () => {
  let project: FunctionsProject;

  beforeAll(async () => {
    // answers with the port the gateway's connection to it came from
    project = await serveFunctionsProject({ peer: `Deno.serve((_req, info) => new Response(String(info.remoteAddr.port)));` });
  }, BOOT_TIMEOUT_MS);

  afterAll(async () => {
    await project?.remove();
  });

  const peerPort = async () => {
    const res = await fetch(`${project.server.url}/functions/v1/peer`);
    expect(res.status).toBe(200);
    return Number(await res.text());
  };

  it("carries requests in a row on one kept-alive connection, and closes it once idle", async () => {
    const ports = new Set<number>();
    for (let i = 0; i < 20; i++) ports.add(await peerPort());
    expect(ports.size).toBe(1);
    const [kept] = ports;
    await new Promise((r) => setTimeout(r, WORKER_IDLE_SOCKET_MS + 1_000));
    expect(await peerPort()).not.toBe(kept);
  }, 30_000);
});

/** A stand-in worker that closes every connection at its second request without answering. */
function workerDroppingSecondRequests(): http.Server & { dropped: number } {
  const seen = new WeakMap<net.Socket, number>();
  const server = Object.assign(http.createServer((req, res) => {
    const n = (seen.get(req.socket) ?? 0) + 1;
    seen.set(req.socket, n);
    if (n === 2) {
      server.dropped++;
      req.socket.destroy();
      return;
    }
    const hash = createHash("sha256");
    req.on("data", (chunk: Buffer) => hash.update(chunk));
    req.on("end", () => res.end(hash.digest("hex")));
  }), { dropped: 0 });
  return server;
}

/** A stand-in worker that closes every connection at its first request: a crash. */
function workerDroppingEverything(): http.Server {
  return http.createServer((req) => req.socket.destroy());
}

/** The gateway's forward() in front of a stand-in worker; a worker it cannot reach gives 502. */
function gatewayTo(workerPort: number, agent: http.Agent): http.Server {
  return http.createServer((req, res) => {
    void forward(req, res, workerPort, "/w", agent, 0).then((outcome) => {
      if (outcome !== "unreachable") return;
      res.writeHead(502);
      res.end("unreachable");
    });
  });
}

async function listening(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return (server.address() as net.AddressInfo).port;
}

describe("forward() when a kept-alive connection was closed by the worker", () => {
  const servers: http.Server[] = [];
  const agents: http.Agent[] = [];
  afterAll(async () => {
    for (const a of agents) a.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => { s.closeAllConnections(); s.close(r); })));
  });
  const serve = async (worker: http.Server) => {
    const agent = workerAgent();
    agents.push(agent);
    const gateway = gatewayTo(await listening(worker), agent);
    servers.push(worker, gateway);
    return `http://127.0.0.1:${await listening(gateway)}/`;
  };

  it("sends the request again on a new connection, body and all", async () => {
    const worker = workerDroppingSecondRequests();
    const url = await serve(worker);
    const answers: string[] = [];
    for (let i = 0; i < 30; i++) {
      const body = Buffer.alloc(64 * 1024 + i, i);
      const res = await fetch(url, { method: "POST", body });
      const text = await res.text();
      answers.push(res.status === 200 && text === createHash("sha256").update(body).digest("hex") ? "ok" : `${i}: ${res.status} ${text}`);
    }
    expect(answers.filter((a) => a !== "ok")).toEqual([]);
    expect(answers).toHaveLength(30);
    // every other request went out on a kept connection the worker then dropped
    expect(worker.dropped).toBeGreaterThanOrEqual(10);
  }, 30_000);

  it("a worker that drops every connection, new ones too, is down: 502, not an endless retry", async () => {
    const url = await serve(workerDroppingEverything());
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(url, { method: "POST", body: "x" })).status);
    expect(statuses).toEqual([502, 502, 502]);
  });
});
