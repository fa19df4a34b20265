// get-observations-optimized over real HTTP (the Deno-served function, the test cluster's database),
// called the way a frontend calls it: supabase-js functions.invoke with the user's token.
// Covers:
//  - rows mode: the newest page in the read API's order, rows serialised as PostgREST does
//    (numbers, microsecond timestamps, every column), filters (site, submission, date range),
//    GET with query parameters answering exactly like POST, service_role reading any company;
//  - keyset pagination to the end: every row once, in order, across timestamp ties; a full last
//    page says it is the last (next_cursor null), with no empty page after it;
//  - aggregate mode per UTC day and per site: counts and growth_index statistics equal those
//    computed from the fixture, with and without filters; past MAX_AGGREGATE_GROUPS days, the
//    first ones and meta.truncated;
//  - the typed client (client/observations-client.ts): pages(), aggregate(), its pre-flight
//    validation and its typed server errors;
//  - isolation: a user of company A gets 403 or zero rows for company B on every combination of
//    company, program, site, submission and mode (and the other way round); a user without a
//    company gets 403;
//  - CORS: the preflight, and CORS headers on answers and errors;
//  - Server-Timing: the function's phases and the gateway's on an answer.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createObservationsClient, type ObservationRow, type ObservationsPage } from "../../client/observations-client.ts";
import { randomUUID } from "node:crypto";
import { type DailyAggregateRow, MAX_AGGREGATE_GROUPS, type SiteAggregateRow } from "../../supabase/functions/_shared/observations-contract.ts";
import { testEnv } from "../helpers/env.ts";
import { supabaseAs } from "../helpers/supabase.ts";
import {
  createObservationsFixture,
  epochMicros,
  type FixtureCompany,
  type FixtureObservation,
  newestFirst,
  type ObservationsFixture,
} from "../helpers/observations-fixture.ts";

const FN = "get-observations-optimized";

let fx: ObservationsFixture;

interface Answer<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

/** functions.invoke, with the status and JSON body of failures too. */
async function invoke<T = Record<string, unknown>>(
  token: string,
  body: Record<string, unknown> | undefined,
  opts: { method?: "GET" | "POST"; query?: Record<string, string> } = {},
): Promise<Answer<T>> {
  const name = opts.query ? `${FN}?${new URLSearchParams(opts.query).toString()}` : FN;
  const { data, error, response } = await supabaseAs(token).functions.invoke(name, {
    method: opts.method ?? "POST",
    ...(body === undefined ? {} : { body }),
  });
  if (error) {
    const res = response as Response;
    return { status: res.status, body: (await res.json()) as T, headers: res.headers };
  }
  return { status: (response as Response).status, body: data as T, headers: (response as Response).headers };
}

type PageBody = ObservationsPage;
const ids = (rows: { observation_id: string }[]) => rows.map((r) => r.observation_id);
const expectedIds = (rows: FixtureObservation[]) => ids([...rows].sort(newestFirst));

async function allPages(token: string, params: Record<string, unknown>): Promise<PageBody[]> {
  const pages: PageBody[] = [];
  let cursor: string | undefined;
  for (let guard = 0; guard < 1000; guard++) {
    const res = await invoke<PageBody>(token, { ...params, ...(cursor ? { cursor } : {}) });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    pages.push(res.body);
    if (res.body.next_cursor === null) return pages;
    cursor = res.body.next_cursor;
  }
  throw new Error("pagination did not end");
}

const base = (c: FixtureCompany) => ({ company_id: c.companyId, program_id: c.programId });

beforeAll(async () => {
  fx = await createObservationsFixture({ a: 320, b: 60 });
});

afterAll(async () => {
  await fx?.remove();
});

describe("rows mode through functions.invoke", () => {
  it("returns the newest page of the program in the read API's order, with meta and next_cursor", async () => {
    const res = await invoke<PageBody>(fx.a.token, { ...base(fx.a), limit: 50 });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    expect(ids(res.body.rows)).toEqual(expectedIds(fx.a.observations).slice(0, 50));
    expect(res.body.meta).toMatchObject({ mode: "rows", count: 50, limit: 50 });
    expect(res.body.meta.duration_ms).toBeGreaterThanOrEqual(0);
    const last = res.body.rows[49]!;
    expect(res.body.next_cursor).toBe(`${last.created_at}|${last.observation_id}`);
  });

  it("defaults to 100 rows and serialises rows as PostgREST does: every column, numbers, microseconds", async () => {
    const res = await invoke<PageBody>(fx.a.token, base(fx.a));
    expect(res.status).toBe(200);
    expect(res.body.rows).toHaveLength(100);
    const columns = await fx.sql<{ column_name: string }[]>`
      select column_name from information_schema.columns
      where table_schema = 'public' and table_name = 'petri_observations' order by column_name`;
    const byId = new Map(fx.a.observations.map((o) => [o.observation_id, o]));
    for (const row of res.body.rows) {
      expect(Object.keys(row).sort()).toEqual(columns.map((c) => c.column_name));
      const fixture = byId.get(row.observation_id)!;
      expect(epochMicros(row.created_at)).toBe(epochMicros(fixture.created_at));
      expect(row.growth_index).toBe(fixture.growth_index);
      expect(row.company_id).toBe(fx.a.companyId);
      expect(typeof row.metadata).toBe("object");
    }
  });

  it("filters by site, by submission and by a [start_date, end_date) range", async () => {
    const all = fx.a.observations;
    const site = await invoke<PageBody>(fx.a.token, { ...base(fx.a), site_id: fx.a.siteIds[1], limit: 1000 });
    expect(ids(site.body.rows)).toEqual(expectedIds(all.filter((o) => o.site_id === fx.a.siteIds[1])));

    const sub = await invoke<PageBody>(fx.a.token, { ...base(fx.a), submission_id: fx.a.submissionIds[0], limit: 1000 });
    expect(ids(sub.body.rows)).toEqual(expectedIds(all.filter((o) => o.submission_id === fx.a.submissionIds[0])));

    const sorted = [...all].sort(newestFirst);
    const end = sorted[40]!.created_at; // exclusive
    const start = sorted[200]!.created_at; // inclusive
    const inRange = all.filter((o) => epochMicros(o.created_at) >= epochMicros(start) && epochMicros(o.created_at) < epochMicros(end));
    const range = await invoke<PageBody>(fx.a.token, { ...base(fx.a), start_date: start, end_date: end, limit: 1000 });
    expect(range.status).toBe(200);
    expect(ids(range.body.rows)).toEqual(expectedIds(inRange));
    expect(inRange.length).toBeGreaterThan(100);

    const mismatched = await invoke<PageBody>(fx.a.token, {
      ...base(fx.a), site_id: fx.a.siteIds[0], submission_id: fx.a.submissionIds[1],
    });
    expect(mismatched.status).toBe(200);
    expect(mismatched.body.rows).toEqual([]);
  });

  it("answers GET with query parameters exactly like POST", async () => {
    const params = { ...base(fx.a), site_id: fx.a.siteIds[0], limit: 25 };
    const post = await invoke<PageBody>(fx.a.token, params);
    const get = await invoke<PageBody>(fx.a.token, undefined, {
      method: "GET",
      query: { ...params, limit: String(params.limit) },
    });
    expect(get.status).toBe(200);
    expect(ids(get.body.rows)).toEqual(ids(post.body.rows));
    expect(get.body.next_cursor).toBe(post.body.next_cursor);
    const second = await invoke<PageBody>(fx.a.token, undefined, {
      method: "GET",
      query: { ...params, limit: "25", cursor: get.body.next_cursor! },
    });
    expect(ids(second.body.rows)).toEqual(
      expectedIds(fx.a.observations.filter((o) => o.site_id === fx.a.siteIds[0])).slice(25, 50),
    );
  });

  it("lets the service role read any company (it bypasses RLS)", async () => {
    const res = await invoke<PageBody>(testEnv.serviceRoleKey, { ...base(fx.b), limit: 1000 });
    expect(res.status).toBe(200);
    expect(ids(res.body.rows)).toEqual(expectedIds(fx.b.observations));
  });
});

describe("keyset pagination", () => {
  it("pages to the end: every row exactly once, in order, across equal timestamps", async () => {
    const pages = await allPages(fx.a.token, { ...base(fx.a), limit: 37 });
    const seen = pages.flatMap((p) => ids(p.rows));
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expectedIds(fx.a.observations));
    expect(pages).toHaveLength(Math.ceil(fx.a.observations.length / 37));
    expect(pages.slice(0, -1).every((p) => p.rows.length === 37 && p.next_cursor !== null)).toBe(true);
    // the fixture has ties: some page boundary or page holds rows sharing created_at
    const ties = fx.a.observations.filter((o, _, all) => all.some((x) => x !== o && x.created_at === o.created_at));
    expect(ties.length).toBeGreaterThan(10);
  });

  it("says a full last page is the last: no empty page follows", async () => {
    const rowsOfSite = fx.b.observations.filter((o) => o.site_id === fx.b.siteIds[0]);
    const whole = await allPages(fx.b.token, { ...base(fx.b), site_id: fx.b.siteIds[0], limit: rowsOfSite.length });
    expect(whole.map((p) => p.rows.length)).toEqual([rowsOfSite.length]);
    expect(whole[0]!.next_cursor).toBeNull();
    expect(ids(whole[0]!.rows)).toEqual(expectedIds(rowsOfSite));

    // two full pages: the first points to the second, the second is the last
    const all = fx.a.observations;
    const half = all.length / 2;
    expect(Number.isInteger(half)).toBe(true);
    const halves = await allPages(fx.a.token, { ...base(fx.a), limit: half });
    expect(halves.map((p) => p.rows.length)).toEqual([half, half]);
    expect(halves[0]!.next_cursor).not.toBeNull();
    expect(halves[1]!.next_cursor).toBeNull();
    expect(halves.flatMap((p) => ids(p.rows))).toEqual(expectedIds(all));

  });

  it("ends a cursor that points past the last row with one empty page", async () => {
    const sorted = [...fx.b.observations].sort(newestFirst);
    const oldest = sorted.at(-1)!;
    const res = await invoke<PageBody>(fx.b.token, { ...base(fx.b), cursor: `${oldest.created_at}|${oldest.observation_id}` });
    expect(res.status).toBe(200);
    expect(res.body.rows).toEqual([]);
    expect(res.body.next_cursor).toBeNull();
  });

  it("pages one row at a time through rows that share a timestamp to the microsecond", async () => {
    const rowsOfSub = fx.b.observations.filter((o) => o.submission_id === fx.b.submissionIds[0]);
    const tied = rowsOfSub.filter((o) => rowsOfSub.some((x) => x !== o && x.created_at === o.created_at));
    expect(tied.length).toBeGreaterThan(0); // so some cursors point into a tie
    const pages = await allPages(fx.b.token, { ...base(fx.b), submission_id: fx.b.submissionIds[0], limit: 1 });
    expect(pages.flatMap((p) => ids(p.rows))).toEqual(expectedIds(rowsOfSub));
  });
});

// ---------------------------------------------------------------------------
// Aggregates, expected values computed from the fixture
// ---------------------------------------------------------------------------

interface Expected {
  observation_count: number;
  growth_index_count: number;
  avg_growth_index: number | null;
  min_growth_index: number | null;
  max_growth_index: number | null;
  stddev_growth_index: number | null;
  first: bigint;
  last: bigint;
}

function stats(rows: FixtureObservation[]): Expected {
  const values = rows.map((r) => r.growth_index).filter((v): v is number => v !== null);
  const n = values.length;
  const mean = n ? values.reduce((s, v) => s + v, 0) / n : null;
  const stddev = n > 1 && mean !== null ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1)) : null;
  const times = rows.map((r) => epochMicros(r.created_at));
  return {
    observation_count: rows.length,
    growth_index_count: n,
    avg_growth_index: mean,
    min_growth_index: n ? Math.min(...values) : null,
    max_growth_index: n ? Math.max(...values) : null,
    stddev_growth_index: stddev,
    first: times.reduce((a, b) => (b < a ? b : a)),
    last: times.reduce((a, b) => (b > a ? b : a)),
  };
}

function groupBy<K extends string>(rows: FixtureObservation[], key: (o: FixtureObservation) => K): Map<K, FixtureObservation[]> {
  const out = new Map<K, FixtureObservation[]>();
  for (const row of rows) out.set(key(row), [...(out.get(key(row)) ?? []), row]);
  return out;
}

function expectStats(actual: DailyAggregateRow | SiteAggregateRow, expected: Expected): void {
  expect(actual.observation_count).toBe(expected.observation_count);
  expect(actual.growth_index_count).toBe(expected.growth_index_count);
  for (const key of ["avg_growth_index", "min_growth_index", "max_growth_index", "stddev_growth_index"] as const) {
    if (expected[key] === null) expect(actual[key]).toBeNull();
    else expect(actual[key]).toBeCloseTo(expected[key], 6);
  }
  expect(epochMicros(actual.first_observation_at)).toBe(expected.first);
  expect(epochMicros(actual.last_observation_at)).toBe(expected.last);
}

const utcDay = (o: FixtureObservation) => o.created_at.slice(0, 10);

describe("aggregate mode", () => {
  it("per UTC day: counts and growth_index statistics of every day, in order", async () => {
    const res = await invoke<{ rows: DailyAggregateRow[]; next_cursor: null; meta: Record<string, unknown> }>(
      fx.a.token, { ...base(fx.a), mode: "aggregate", group_by: "day" });
    expect(res.status).toBe(200);
    const expected = groupBy(fx.a.observations, utcDay);
    expect(res.body.rows.map((r) => r.day)).toEqual([...expected.keys()].sort());
    for (const row of res.body.rows) expectStats(row, stats(expected.get(row.day)!));
    expect(res.body.next_cursor).toBeNull();
    expect(res.body.meta).toMatchObject({ mode: "aggregate", group_by: "day", count: expected.size, truncated: false });
  });

  it("per site, and with filters (site, date range)", async () => {
    const res = await invoke<{ rows: SiteAggregateRow[] }>(fx.a.token, { ...base(fx.a), mode: "aggregate", group_by: "site" });
    expect(res.status).toBe(200);
    const expected = groupBy(fx.a.observations, (o) => o.site_id);
    expect(res.body.rows.map((r) => r.site_id)).toEqual([...expected.keys()].sort());
    for (const row of res.body.rows) expectStats(row, stats(expected.get(row.site_id)!));

    const sorted = [...fx.a.observations].sort(newestFirst);
    const start = sorted[150]!.created_at;
    const inRange = fx.a.observations.filter(
      (o) => o.site_id === fx.a.siteIds[0] && epochMicros(o.created_at) >= epochMicros(start),
    );
    const filtered = await invoke<{ rows: DailyAggregateRow[] }>(fx.a.token, {
      ...base(fx.a), mode: "aggregate", site_id: fx.a.siteIds[0], start_date: start,
    });
    expect(filtered.status).toBe(200);
    const byDay = groupBy(inRange, utcDay);
    expect(filtered.body.rows.map((r) => r.day)).toEqual([...byDay.keys()].sort());
    for (const row of filtered.body.rows) expectStats(row, stats(byDay.get(row.day)!));
  });
});

describe("aggregate mode past MAX_AGGREGATE_GROUPS", () => {
  it("returns the first MAX_AGGREGATE_GROUPS days in order and says it is truncated", async () => {
    // one observation a day on MAX_AGGREGATE_GROUPS + 5 days long before the fixture's, removed after
    const extra = MAX_AGGREGATE_GROUPS + 5;
    const ids = Array.from({ length: extra }, () => randomUUID());
    const firstDay = Date.UTC(2010, 0, 1);
    const days = ids.map((_, i) => new Date(firstDay + i * 86_400_000).toISOString().slice(0, 10));
    await fx.sql`
      insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, growth_index, created_at)
      select o.id, ${fx.a.submissionIds[0]}::uuid, ${fx.a.siteIds[0]}::uuid, ${fx.a.programId}::uuid, 'truncation-' || o.n, 1, (o.day || 'T12:00:00Z')::timestamptz
      from unnest(${ids}::text[]::uuid[], ${days}::text[]) with ordinality as o(id, day, n)`;
    try {
      const res = await invoke<{ rows: DailyAggregateRow[]; next_cursor: null; meta: Record<string, unknown> }>(
        fx.a.token, { ...base(fx.a), mode: "aggregate", group_by: "day" });
      expect(res.status).toBe(200);
      expect(res.body.rows.map((r) => r.day)).toEqual(days.slice(0, MAX_AGGREGATE_GROUPS));
      expect(res.body.rows.every((r) => r.observation_count === 1)).toBe(true);
      expect(res.body.meta).toMatchObject({ mode: "aggregate", group_by: "day", count: MAX_AGGREGATE_GROUPS, truncated: true });
    } finally {
      await fx.sql`delete from public.petri_observations where observation_id = any(${ids}::text[]::uuid[])`;
    }
  });
});

describe("typed client (client/observations-client.ts)", () => {
  it("pages through everything and aggregates, with typed results", async () => {
    const client = createObservationsClient(supabaseAs(fx.a.token));
    const rows: ObservationRow[] = [];
    for await (const page of client.pages({ ...base(fx.a), limit: 100 })) rows.push(...page.rows);
    expect(ids(rows)).toEqual(expectedIds(fx.a.observations));

    const perSite = await client.aggregate({ ...base(fx.a), group_by: "site" });
    expect(perSite.error).toBeNull();
    const siteRows: SiteAggregateRow[] = perSite.data!.rows;
    expect(siteRows.reduce((n, r) => n + r.observation_count, 0)).toBe(fx.a.observations.length);

    const perDay = await client.aggregate(base(fx.a));
    expect(perDay.data?.meta.group_by).toBe("day");
  });

  it("pages() sends one request per page: none for an empty page after a full last one", async () => {
    let requests = 0;
    const counting: typeof fetch = (input, init) => {
      requests += 1;
      return fetch(input, init);
    };
    const client = createObservationsClient(supabaseAs(fx.a.token, { fetch: counting }));
    const half = fx.a.observations.length / 2;
    const sizes: number[] = [];
    for await (const page of client.pages({ ...base(fx.a), limit: half })) sizes.push(page.rows.length);
    expect(sizes).toEqual([half, half]);
    expect(requests).toBe(2);
  });

  it("refuses invalid parameters before sending, in the server's error shape", async () => {
    const client = createObservationsClient(supabaseAs(fx.a.token));
    const { data, error } = await client.page({ company_id: "nope", program_id: fx.a.programId, limit: 5000 });
    expect(data).toBeNull();
    expect(error).toMatchObject({ status: null, code: "validation_failed" });
    const fields = (error!.details as { issues: { field: string }[] }).issues.map((i) => i.field);
    expect(fields).toEqual(["company_id", "limit"]);
  });

  it("returns the server's errors typed, with status and code", async () => {
    const client = createObservationsClient(supabaseAs(fx.a.token));
    const { error } = await client.page(base(fx.b));
    expect(error).toMatchObject({ status: 403, code: "forbidden" });
    expect(error!.message).toMatch(/company/);
  });
});

// ---------------------------------------------------------------------------
// Isolation
// ---------------------------------------------------------------------------

describe("company isolation", () => {
  function combinations(me: FixtureCompany, other: FixtureCompany) {
    const out: Record<string, unknown>[] = [];
    for (const company of [me.companyId, other.companyId]) {
      for (const program of [me.programId, other.programId]) {
        for (const site of [undefined, me.siteIds[0], other.siteIds[0]]) {
          for (const submission of [undefined, me.submissionIds[0], other.submissionIds[0]]) {
            for (const mode of [{}, { mode: "aggregate", group_by: "day" }, { mode: "aggregate", group_by: "site" }]) {
              out.push({
                company_id: company, program_id: program,
                ...(site ? { site_id: site } : {}), ...(submission ? { submission_id: submission } : {}), ...mode,
              });
            }
          }
        }
      }
    }
    return out;
  }

  const foreignIds = (c: FixtureCompany) => new Set([c.companyId, c.programId, ...c.siteIds, ...c.submissionIds]);

  for (const [meKey, otherKey] of [["a", "b"], ["b", "a"]] as const) {
    it(`a user of company ${meKey.toUpperCase()} gets 403 or zero rows of company ${otherKey.toUpperCase()} on every combination`, async () => {
      const me = fx[meKey];
      const other = fx[otherKey];
      const foreign = foreignIds(other);
      const requests = combinations(me, other).filter((p) => Object.values(p).some((v) => foreign.has(v as string)));
      expect(requests).toHaveLength(2 * 2 * 3 * 3 * 3 - 3 * 2 * 2); // every combination touching the other company
      const violations: string[] = [];
      let forbidden = 0;
      for (const params of requests) {
        const res = await invoke<{ rows?: Record<string, unknown>[]; error?: { code: string } }>(me.token, params);
        if (res.status === 403 && res.body.error?.code === "forbidden") {
          forbidden += 1;
          continue;
        }
        const leaked = (res.body.rows ?? []).filter((r) =>
          Object.values(r).some((v) => typeof v === "string" && foreign.has(v)) || (r.observation_count as number) > 0);
        if (res.status !== 200 || (res.body.rows ?? []).length > 0 || leaked.length > 0) {
          violations.push(`${JSON.stringify(params)} -> ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
        }
      }
      expect(violations).toEqual([]);
      // the foreign company or program is refused outright; only foreign sites/submissions yield empty results
      expect(forbidden).toBe(requests.filter((p) => p.company_id === other.companyId || p.program_id === other.programId).length);
    });
  }

  it("a user without a company gets 403 for every company and mode", async () => {
    for (const c of [fx.a, fx.b]) {
      for (const mode of [{}, { mode: "aggregate" }]) {
        const res = await invoke<{ error: { code: string } }>(fx.loner.token, { ...base(c), ...mode });
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe("forbidden");
      }
    }
  });
});

// ---------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------

describe("CORS", () => {
  const url = `${testEnv.functionsUrl}/${FN}`;

  it("answers the preflight without a token, allowing supabase-js' headers and both methods", async () => {
    const res = await fetch(url, {
      method: "OPTIONS",
      headers: {
        Origin: "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, x-client-info, apikey, content-type",
      },
    });
    expect([200, 204]).toContain(res.status);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    const allowed = (res.headers.get("access-control-allow-headers") ?? "").split(",").map((h) => h.trim().toLowerCase());
    expect(allowed).toEqual(expect.arrayContaining(["authorization", "x-client-info", "apikey", "content-type"]));
    expect(res.headers.get("access-control-allow-methods")).toMatch(/GET/);
    expect(res.headers.get("access-control-allow-methods")).toMatch(/POST/);
  });

  it("puts CORS headers on answers and on errors, so browsers can read both", async () => {
    const ok = await invoke(fx.a.token, { ...base(fx.a), limit: 1 });
    expect(ok.headers.get("access-control-allow-origin")).toBe("*");
    const bad = await invoke(fx.a.token, { ...base(fx.a), limit: 0 });
    expect(bad.status).toBe(400);
    expect(bad.headers.get("access-control-allow-origin")).toBe("*");
    const foreign = await invoke(fx.a.token, base(fx.b));
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get("access-control-allow-origin")).toBe("*");
  });
});

describe("Server-Timing", () => {
  it("an answer says where its time went: the function's phases, then the gateway's", async () => {
    const ok = await invoke(fx.a.token, { ...base(fx.a), limit: 5 });
    expect(ok.status).toBe(200);
    const phases = (ok.headers.get("server-timing") ?? "").split(",").map((entry) => {
      const [name, dur] = entry.trim().split(";dur=");
      return [name, Number(dur)] as const;
    });
    expect(phases.map(([name]) => name)).toEqual(["jwt", "validate", "begin", "context", "query", "commit", "json", "total", "gw-verify", "gw-forward"]);
    for (const [, ms] of phases) expect(ms).toBeGreaterThanOrEqual(0);
    const ms = Object.fromEntries(phases);
    // the whole holds its parts: the function's total its phases, the gateway's forward the function
    expect(ms.total).toBeGreaterThanOrEqual(ms.query ?? Number.NaN);
    expect(ms["gw-forward"]).toBeGreaterThanOrEqual(ms.total ?? Number.NaN);
  });
});
