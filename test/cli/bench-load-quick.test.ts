// `npm run bench:load -- --quick` end to end, so the load benchmark cannot rot: a cluster of its
// own (Micro), the demo data, the pooler, the read function with 2 workers, the app's
// PostgREST-shaped sessions, both runs. Covers:
//  - every request kind was sent and answered in both runs, with no error (a handful of clients
//    stays far from Micro's limits);
//  - the pooled run's functions held no direct connection and reached the database through the
//    pooler (its SHOW POOLS: clients, and servers within its pool); the direct run's functions held
//    direct connections and the pooler none; no connection was refused in either run;
//  - the app's sessions were sampled, the report and the JSON were written.
// No timing assertions: the machine is shared and the quick scale is tiny.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../scripts/lib/cluster.ts";
import { testPort } from "../../scripts/lib/stack.ts";
import { capture, tempDir, TSX } from "../helpers/processes.ts";

interface Kind { kind: string; requests: number; errors: { too_many_connections: number; reserved_slots: number; other: number } }
interface Run {
  functions_url: "pooled" | "direct";
  kinds: Kind[];
  app: Kind;
  connections: { samples: unknown[]; peak_by: Record<"functions" | "pooler" | "app" | "cron" | "others", number>; peak_client_backends: number; max_connections: number };
  database_refusals: { too_many_connections: number; reserved_slots: number; samples: string[]; other: string[] };
  pooler: { samples: unknown[]; peak_clients: number; peak_servers: number };
}

// its own test port, outside the ephemeral range (scripts/lib/stack.ts): the cluster and its pooler
// start while the other suites hold many client sockets
const PORT = testPort("benchLoadQuick");
const errors = (k: Kind) => k.errors.too_many_connections + k.errors.reserved_slots + k.errors.other;

describe("npm run bench:load -- --quick", () => {
  let out: string;
  let runs: Run[];
  let md: string;

  beforeAll(async () => {
    out = tempDir("bench-load-quick-");
    const r = await capture(process.execPath, [TSX, join(REPO_ROOT, "scripts", "bench-load.ts"), "--quick", "--port", String(PORT), "--out", out], { cwd: REPO_ROOT });
    expect(r.code, r.stderr + r.stdout.slice(-3000)).toBe(0);
    runs = (JSON.parse(readFileSync(join(out, "load.json"), "utf8")) as { runs: Run[] }).runs;
    md = readFileSync(join(out, "load.md"), "utf8");
  }, 600_000);

  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it("sent every kind of request in both runs, none failed", () => {
    expect(runs.map((r) => r.functions_url)).toEqual(["pooled", "direct"]);
    for (const run of runs) {
      expect(run.kinds.map((k) => k.kind)).toEqual(["page", "aggregate_day", "aggregate_site"]);
      for (const k of [...run.kinds, run.app]) {
        expect(k.requests, `${run.functions_url} ${k.kind}`).toBeGreaterThan(0);
        expect(errors(k), `${run.functions_url} ${k.kind}`).toBe(0);
      }
      expect(run.database_refusals).toEqual({ too_many_connections: 0, reserved_slots: 0, samples: [], other: [] });
    }
  });

  it("saw the functions' connections through the pooler in one run and direct in the other", () => {
    const [pooled, direct] = runs;
    expect(pooled!.connections.samples.length).toBeGreaterThan(0);
    expect(pooled!.connections.peak_by.functions).toBe(0);
    expect(pooled!.connections.peak_by.pooler).toBeGreaterThan(0);
    expect(direct!.connections.peak_by.functions).toBeGreaterThan(0);
    expect(direct!.connections.peak_by.pooler).toBe(0);
    // the pooler's own view (SHOW POOLS): the pooled run's clients, never more servers than its pool
    expect(pooled!.pooler.samples.length).toBeGreaterThan(0);
    expect(pooled!.pooler.peak_clients).toBeGreaterThan(0);
    expect(pooled!.pooler.peak_servers).toBeGreaterThan(0);
    expect(pooled!.pooler.peak_servers).toBeLessThanOrEqual(15);
    expect(direct!.pooler.peak_clients).toBe(0);
    for (const run of runs) {
      expect(run.connections.peak_by.app).toBeGreaterThan(0);
      expect(run.connections.max_connections).toBe(60);
      expect(run.connections.peak_client_backends).toBeLessThanOrEqual(60);
    }
  });

  it("wrote the report", () => {
    expect(md).toMatch(/^# Benchmark: the read function at Micro's limits/m);
    expect(md).toMatch(/^## Connections in use$/m);
  });
});
