// The local functions gateway keeps an idle keep-alive socket as long as a platform front end does
// (about a minute), not Node's 5 s: a caller whose next request on a kept socket comes a few seconds
// later, as a busy client's does, must get an answer, not "other side closed" (npm run bench:load
// saw 53 such failures in 20 s with 200 clients before this). Covers: a second request sent 6 s
// after the first on the same TCP connection is answered, and the answer announces the timeout.
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FunctionsServer } from "../../scripts/lib/functions-server.ts";
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
