/**
 * Deno-side bootstrap for one edge function (run by ./supervisor.ts).
 *
 * Hosted Supabase decides where a function listens; the function itself only
 * calls `Deno.serve(handler)` or exports `default { fetch }`. To run that code
 * unchanged we pin every Deno.serve call to 127.0.0.1:WORKER_PORT before the
 * entry module is evaluated, then fall back to `default.fetch` if needed.
 */

type Handler = Deno.ServeHandler<Deno.NetAddr>;
type FetchExport = {
  fetch: (req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => Response | Promise<Response>;
};

function requireEnv(name: string): string {
  const value = Deno.env.get(name);
  if (!value) {
    console.error(`worker: missing env ${name}`);
    Deno.exit(2);
  }
  return value;
}

const port = Number(requireEnv("WORKER_PORT"));
const entrypoint = requireEnv("WORKER_ENTRYPOINT");

const originalServe = Deno.serve.bind(Deno);
let served = false;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** Normalises the three public Deno.serve call shapes to (options, handler). */
function splitServeArgs(args: unknown[]): { options: Record<string, unknown>; handler: Handler } {
  const [first, second] = args;
  if (typeof first === "function") return { options: {}, handler: first as Handler };
  if (isRecord(first) && typeof second === "function") {
    return { options: first, handler: second as Handler };
  }
  if (isRecord(first) && typeof first.handler === "function") {
    return { options: first, handler: first.handler as Handler };
  }
  throw new TypeError("Deno.serve: expected a handler function or options with a handler");
}

function pinnedServe(...args: unknown[]): Deno.HttpServer<Deno.NetAddr> {
  if (served) {
    // A second listener could never be reached through the gateway, and on
    // the pinned port it would fail with a less helpful EADDRINUSE.
    throw new Error("Deno.serve was called more than once; edge functions serve a single handler");
  }
  const { options, handler } = splitServeArgs(args);
  // Drop placement and transport settings: the platform owns them.
  const { port: _port, hostname: _hostname, path: _path, cert: _cert, key: _key, handler: _h, ...rest } =
    options;
  served = true;
  return originalServe({ ...rest, hostname: "127.0.0.1", port, handler } as Deno.ServeTcpOptions & Deno.ServeInit<Deno.NetAddr>);
}

function installServeShim(): void {
  Object.defineProperty(Deno, "serve", {
    value: pinnedServe as unknown as typeof Deno.serve,
    writable: true,
    configurable: true,
  });
}

/** Hosted functions may call EdgeRuntime.waitUntil; keep the promise alive and log failures. */
function installEdgeRuntimeShim(): void {
  const g = globalThis as Record<string, unknown>;
  if (g.EdgeRuntime !== undefined) return;
  g.EdgeRuntime = {
    waitUntil(promise: Promise<unknown>): void {
      promise.catch((err: unknown) => console.error("EdgeRuntime.waitUntil task failed:", err));
    },
  };
}

function defaultFetchExport(mod: Record<string, unknown>): FetchExport | null {
  const candidate = mod.default;
  if (isRecord(candidate) && typeof candidate.fetch === "function") return candidate as FetchExport;
  return null;
}

async function main(): Promise<void> {
  installServeShim();
  installEdgeRuntimeShim();
  const mod = (await import(new URL(entrypoint, "file:///").href)) as Record<string, unknown>;
  if (served) return;
  const exported = defaultFetchExport(mod);
  if (exported) {
    pinnedServe((req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => exported.fetch(req, info));
    return;
  }
  console.error(`worker: ${entrypoint} neither called Deno.serve nor exported default { fetch }`);
  Deno.exit(3);
}

await main();
