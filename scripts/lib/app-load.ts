// A simulated application writing to an observation table while it is migrated: several sessions,
// each its own connection, running inserts, updates, deletes and updates that change a partition
// key (program_id, site_id or created_at) as fast as they can (or with a pause between them).
// It writes the way docs/your-app.md tells apps to: plain INSERT into the live table, and the routed
// by-id RPCs (update_observation_by_id, delete_observation_by_id), which work on the legacy table
// and on the partitioned one alike. Every statement's latency and every error is recorded;
// serialization failures and deadlocks are retried (as apps must on a partitioned table, where a
// key-changing update moves the row) and counted separately.
import postgres, { type Sql } from "postgres";

export type TableName = "petri_observations" | "gasifier_observations";
export type OpKind = "insert" | "update" | "delete" | "move_site" | "move_time" | "move_program";

export interface AppLoadOptions {
  url: string;
  table: TableName;
  sessions: number;
  /** pause between statements of one session (0 = flat out) */
  thinkMs?: number;
  seed?: number;
  /**
   * Share of the inserts into gasifier_observations sent without program_id, as older app versions
   * send them (the column is nullable in the legacy table); 0 by default.
   */
  nullProgramShare?: number;
}

export interface AppLoadStats {
  ops: number;
  byKind: Record<OpKind, number>;
  errors: { kind: OpKind; code: string; message: string; at: number }[];
  retried: number;
  /** inserts sent without program_id (AppLoadOptions.nullProgramShare) */
  withoutProgram: number;
  latenciesMs: number[];
  /** [start ms, latency ms] of every statement, for looking at one window (e.g. the swap) */
  timeline: [number, number][];
  seconds: number;
}

interface RowRef { id: string; programId: string; siteId: string }
interface Site { siteId: string; programId: string; submissions: string[] }

const RETRYABLE = new Set(["40001", "40P01"]);

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? 0;
}

function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

function emptyStats(): AppLoadStats {
  return {
    ops: 0,
    byKind: { insert: 0, update: 0, delete: 0, move_site: 0, move_time: 0, move_program: 0 },
    errors: [],
    retried: 0,
    withoutProgram: 0,
    latenciesMs: [],
    timeline: [],
    seconds: 0,
  };
}

interface LoadSession {
  sql: Sql;
  i: number;
  stats: AppLoadStats;
  /** ms since the load started */
  now: () => number;
  stopping: () => boolean;
}

/** How long stop() waits for the sessions' statements in flight before it ends their connections. */
const STOP_GRACE_MS = 5_000;

/** N sessions, each on a connection of its own, running `body` until stopped; a session that dies is an error. */
function runSessions(url: string, sessions: number, body: (s: LoadSession) => Promise<void>,
  connection: { prepare?: boolean } = {}): { stop: () => Promise<AppLoadStats>; stats: AppLoadStats } {
  const stats = emptyStats();
  const t0 = performance.now();
  let stopping = false;
  const conns: Sql[] = [];
  const running = Array.from({ length: sessions }, (_, i) => {
    const sql = postgres(url, { max: 1, idle_timeout: 0, onnotice: () => {}, ...connection });
    conns.push(sql);
    return body({ sql, i, stats, now: () => performance.now() - t0, stopping: () => stopping })
      .catch((e: Error & { code?: string }) => {
        stats.errors.push({ kind: "insert", code: e.code ?? "?", message: `session ${i} died: ${e.message}`, at: performance.now() - t0 });
      });
  });
  return {
    stats,
    stop: async () => {
      stopping = true;
      // Each session ends after its statement in flight. A statement that never settles (its
      // server went away while the session was reconnecting) is ended with its connection after
      // a grace, so that it cannot hold stop() up: end() rejects it, and endedByStop ignores that.
      const finished = Promise.all(running);
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([finished, new Promise((r) => { grace = setTimeout(r, STOP_GRACE_MS); })]);
      clearTimeout(grace);
      await Promise.all(conns.map((c) => c.end({ timeout: 5 })));
      await finished;
      stats.seconds = (performance.now() - t0) / 1000;
      return stats;
    },
  };
}

/** One statement's latency in the session's stats, then the session's pause. */
async function recordAndPause(ls: LoadSession, kind: OpKind, started: number, thinkMs: number | undefined): Promise<void> {
  const ms = performance.now() - started;
  ls.stats.ops++;
  ls.stats.byKind[kind]++;
  ls.stats.latenciesMs.push(ms);
  ls.stats.timeline.push([ls.now() - ms, ms]);
  if (thinkMs) await new Promise((r) => setTimeout(r, thinkMs));
}

/** An error of a statement cut short by stop() is not the app's. */
function endedByStop(s: LoadSession, err: { code?: string; message?: string }): boolean {
  return s.stopping() && /CONNECTION_(ENDED|DESTROYED)|terminat/i.test(`${err.code} ${err.message}`);
}

export function startAppLoad(o: AppLoadOptions): { stop: () => Promise<AppLoadStats>; stats: AppLoadStats } {
  return runSessions(o.url, o.sessions, async (ls) => {
    const { sql, i, stats } = ls;
    const rand = rng((o.seed ?? 7) * 1000 + i + 1);
    const pick = <T>(a: T[]): T => a[Math.floor(rand() * a.length)] as T;
    const sites: Site[] = (await sql<{ site_id: string; program_id: string; subs: string[] }[]>`
      select s.site_id, s.program_id, array(select b.submission_id from public.submissions b where b.site_id = s.site_id limit 20) as subs
      from public.sites s order by s.site_id`).map((r) => ({ siteId: r.site_id, programId: r.program_id, submissions: r.subs }))
      .filter((s) => s.submissions.length > 0);
    const byProgram = new Map<string, Site[]>();
    for (const s of sites) byProgram.set(s.programId, [...(byProgram.get(s.programId) ?? []), s]);
    // rows of this session only (no two sessions write the same row)
    const owned: RowRef[] = (await sql.unsafe<{ observation_id: string; program_id: string; site_id: string }[]>(
      `select observation_id, coalesce(program_id, (select program_id from public.sites s where s.site_id = t.site_id)) as program_id, site_id
       from public.${o.table} t where abs(hashtext(observation_id::text)) % ${o.sessions} = ${i} limit 300`))
      .map((r) => ({ id: r.observation_id, programId: r.program_id, siteId: r.site_id }));

    while (!ls.stopping()) {
      const roll = rand();
      const kind: OpKind = owned.length < 20 || roll < 0.3 ? "insert" : roll < 0.55 ? "update" : roll < 0.65 ? "delete"
        : roll < 0.78 ? "move_site" : roll < 0.9 ? "move_time" : "move_program";
      const idx = Math.floor(rand() * owned.length);
      const row = owned[idx];
      const run = async (): Promise<void> => {
        if (kind === "insert" || !row) {
          const s = pick(sites);
          // (the random stream is drawn from only when the option is on: other loads stay as they were)
          const withoutProgram = o.table === "gasifier_observations" && (o.nullProgramShare ?? 0) > 0 && rand() < (o.nullProgramShare ?? 0);
          if (withoutProgram) stats.withoutProgram++;
          const [r] = await sql.unsafe<{ id: string }[]>(
            o.table === "petri_observations"
              ? `insert into public.petri_observations (submission_id, site_id, program_id, petri_code, growth_index, created_at)
                 values ($1, $2, $3, $4, $5, now() - random() * interval '40 days') returning observation_id as id`
              : `insert into public.gasifier_observations (submission_id, site_id, program_id, gasifier_code, measure, created_at)
                 values ($1, $2, $3, $4, $5, now() - random() * interval '40 days') returning observation_id as id`,
            [pick(s.submissions), s.siteId, withoutProgram ? null : s.programId, `load-${i}-${stats.ops}`, Math.round(rand() * 9000) / 100]);
          // (a row without program_id for a program with partitions of its own is stored but not returned)
          if (r) owned.push({ id: r.id, programId: s.programId, siteId: s.siteId });
          return;
        }
        let changes: Record<string, unknown>;
        if (kind === "update") {
          changes = o.table === "petri_observations" ? { growth_index: Math.round(rand() * 9000) / 100, notes: `n${stats.ops}` }
            : { measure: Math.round(rand() * 9000) / 100, notes: `n${stats.ops}` };
        } else if (kind === "move_site") {
          const other = byProgram.get(row.programId)?.filter((s) => s.siteId !== row.siteId) ?? [];
          if (other.length === 0) return;
          const s = pick(other);
          changes = { site_id: s.siteId };
          row.siteId = s.siteId;
        } else if (kind === "move_time") {
          changes = { created_at: new Date(Date.now() - Math.floor(rand() * 40 * 86_400_000)).toISOString() };
        } else if (kind === "move_program") {
          const s = pick(sites);
          changes = { program_id: s.programId, site_id: s.siteId };
          row.programId = s.programId;
          row.siteId = s.siteId;
        } else {
          await sql`select public.delete_observation_by_id(${o.table}, ${row.id}::uuid)`;
          owned.splice(idx, 1);
          return;
        }
        await sql`select public.update_observation_by_id(${o.table}, ${row.id}::uuid, ${sql.json(changes as never)}::jsonb)`;
      };
      const started = performance.now();
      for (let attempt = 1; ; attempt++) {
        try {
          await run();
          break;
        } catch (e) {
          const err = e as { code?: string; message?: string };
          if (endedByStop(ls, err)) break;
          if (RETRYABLE.has(err.code ?? "") && attempt < 10) {
            stats.retried++;
            continue;
          }
          stats.errors.push({ kind, code: err.code ?? "?", message: err.message ?? String(e), at: ls.now() });
          break;
        }
      }
      await recordAndPause(ls, kind, started, o.thinkMs);
    }
  });
}

/**
 * The app as it is before the bundle (during `supabase db push` and the setup steps): plain SQL
 * against the legacy table, the way its server code or PostgREST sends it, with nothing of the
 * bundle: inserts, updates by observation_id, reads by observation_id. Latency and errors per
 * statement, nothing retried (an error here is an error the app would see).
 */
export function startLegacyAppLoad(o: AppLoadOptions): { stop: () => Promise<AppLoadStats>; stats: AppLoadStats } {
  return runSessions(o.url, o.sessions, async (ls) => {
    const { sql, i, stats } = ls;
    const rand = rng((o.seed ?? 13) * 1000 + i + 1);
    const pick = <T>(a: T[]): T => a[Math.floor(rand() * a.length)] as T;
    const sites = await sql<{ site_id: string; program_id: string; submission_id: string }[]>`
      select s.site_id, s.program_id, (select b.submission_id from public.submissions b where b.site_id = s.site_id limit 1) as submission_id
      from public.sites s where exists (select from public.submissions b where b.site_id = s.site_id) order by s.site_id`;
    const ids = (await sql.unsafe<{ id: string }[]>(
      `select observation_id as id from public.${o.table} where abs(hashtext(observation_id::text)) % ${o.sessions} = ${i} limit 500`)).map((r) => r.id);
    while (!ls.stopping()) {
      const roll = rand();
      const kind: OpKind = ids.length === 0 || roll < 0.3 ? "insert" : "update";
      const started = performance.now();
      try {
        if (kind === "insert") {
          const s = pick(sites);
          const [r] = await sql.unsafe<{ id: string }[]>(
            o.table === "petri_observations"
              ? `insert into public.petri_observations (submission_id, site_id, program_id, petri_code, growth_index)
                 values ($1, $2, $3, $4, $5) returning observation_id as id`
              : `insert into public.gasifier_observations (submission_id, site_id, program_id, gasifier_code, measure)
                 values ($1, $2, $3, $4, $5) returning observation_id as id`,
            [s.submission_id, s.site_id, s.program_id, `app-${i}-${stats.ops}`, Math.round(rand() * 9000) / 100]);
          if (r) ids.push(r.id);
        } else if (roll < 0.65) {
          await sql.unsafe(`update public.${o.table} set notes = $2 where observation_id = $1`, [pick(ids), `app ${i} ${stats.ops}`]);
        } else {
          await sql.unsafe(`select * from public.${o.table} where observation_id = $1`, [pick(ids)]);
        }
      } catch (e) {
        const err = e as { code?: string; message?: string };
        if (!endedByStop(ls, err)) stats.errors.push({ kind, code: err.code ?? "?", message: err.message ?? String(e), at: ls.now() });
      }
      await recordAndPause(ls, kind, started, o.thinkMs);
    }
  });
}

export function summarize(s: AppLoadStats): string {
  return `${s.ops} statements in ${s.seconds.toFixed(1)} s (${Math.round(s.ops / Math.max(s.seconds, 0.001))}/s; ` +
    `${Object.entries(s.byKind).map(([k, v]) => `${k} ${v}`).join(", ")}), latency p50 ${percentile(s.latenciesMs, 50).toFixed(1)} ms, ` +
    `p99 ${percentile(s.latenciesMs, 99).toFixed(1)} ms, max ${percentile(s.latenciesMs, 100).toFixed(1)} ms, ` +
    `${s.errors.length} errors, ${s.retried} retried serialization/deadlock errors`;
}

export interface KeylessLoadOptions {
  url: string;
  table: TableName;
  sessions: number;
  /** ids to read and update (rows that exist; deleted ones simply match nothing) */
  ids: string[];
  seed?: number;
}

/**
 * What supabase-js sends through PostgREST when an app filters on the id alone: `.select().eq(
 * 'observation_id', id)` and `.update({ notes }).eq('observation_id', id)`, as prepared statements
 * reused on one connection per session (PostgREST prepares its statements), plus whole-table counts
 * (`count: 'exact'`). None of them carries the partition keys, so on a partitioned table each one
 * locks every partition and every index of every leaf: the load that fills a small server's lock
 * table. Errors (e.g. 53200 out of shared memory) are recorded, nothing is retried.
 */
export function startKeylessLoad(o: KeylessLoadOptions): { stop: () => Promise<AppLoadStats>; stats: AppLoadStats } {
  return runSessions(o.url, o.sessions, async (ls) => {
    const { sql, i, stats } = ls;
    const rand = rng((o.seed ?? 11) * 1000 + i + 1);
    while (!ls.stopping()) {
      const id = o.ids[Math.floor(rand() * o.ids.length)] ?? "00000000-0000-0000-0000-000000000000";
      const roll = rand();
      const started = performance.now();
      try {
        if (roll < 0.45) {
          await sql.unsafe(`select * from public.${o.table} where observation_id = $1`, [id], { prepare: true });
        } else if (roll < 0.9) {
          await sql.unsafe(`update public.${o.table} set notes = $2 where observation_id = $1`, [id, `keyless ${i}`], { prepare: true });
          stats.byKind.update++;
        } else {
          await sql.unsafe(`select count(*) from public.${o.table}`, [], { prepare: true });
        }
      } catch (e) {
        const err = e as { code?: string; message?: string };
        if (!endedByStop(ls, err)) stats.errors.push({ kind: "update", code: err.code ?? "?", message: err.message ?? String(e), at: ls.now() });
      }
      const ms = performance.now() - started;
      stats.ops++;
      stats.latenciesMs.push(ms);
      stats.timeline.push([ls.now() - ms, ms]);
    }
  }, { prepare: true });
}
