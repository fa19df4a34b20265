// The day of new writes the maintenance section processes: a fixed number of petri rows (by default
// 50,000, 1% of the 5M table, the same at every scale) inserted into the live partitioned table
// with created_at spread evenly over a UTC day of their own, on every site of a running program, as
// the app posts them: a submission's observations in one INSERT (statement triggers record the
// changed (program, site, day) groups once per statement, as they would for the app). Maintenance
// then recomputes what these writes changed, so its figure is comparable across table sizes.
// A day of their own: the bench's history ends with the previous month (options.ts historyEnd), and
// the days of the current month other than today hold nothing the bench did not write there; today
// holds what the sections before wrote (the inserts, at each scale's own rate). So the groups the
// run recomputes hold the day's rows only, as the nightly run after a day of the app's writes.
import { targets } from "./inserts.ts";
import { benchSession, inSession } from "./session.ts";
import type { DayWrites } from "./types.ts";

/** rows per statement: one submission's observations (the demo shape's observationsPerSubmission) */
const ROWS_PER_STATEMENT = 10;
/** app sessions writing at once (each statement commits on its own) */
const SESSIONS = 4;

/**
 * The nth day of writes goes on the nth day of the current UTC month other than today: yesterday,
 * the day before, … back to the 1st, then tomorrow, the day after (early in the month). So a second
 * day of writes does not land on the first one's groups.
 */
export async function writeDay(url: string, rows: number, nth = 1): Promise<DayWrites> {
  return inSession(url, "bench-day-writes", async (sql) => {
    // the insert section's targets: every site of a running program (its current month has a leaf)
    const t = await targets(sql);
    const [day] = await sql<{ start: Date }[]>`
      with d as (select date_trunc('day', now() at time zone 'utc') as today)
      select x.day at time zone 'utc' as start
      from d, lateral (
        select g as day, case when g < today then 0 else 1 end as after_today, abs(extract(epoch from g - today)) as distance
        from generate_series(date_trunc('month', today), date_trunc('month', today) + interval '1 month' - interval '1 day', interval '1 day') g
        where g <> today) x
      order by x.after_today, x.distance
      offset ${nth - 1} limit 1`;
    if (!day) throw new Error(`no day ${nth} of the current month besides today for a day of writes`);
    const start = day.start.getTime();
    const span = 86_400_000 - 1000;
    const sessions = Array.from({ length: SESSIONS }, (_, i) => benchSession(url, `bench-day-writes-${i + 1}`));
    const statements = Math.ceil(rows / ROWS_PER_STATEMENT);
    const t0 = performance.now();
    try {
      // session i writes statements i, i + SESSIONS, …: the day's rows in time order across them
      await Promise.all(sessions.map(async (s, i) => {
        for (let k = i; k < statements; k += SESSIONS) {
          const site = t[k % t.length]!;
          const from = k * ROWS_PER_STATEMENT;
          const n = Math.min(ROWS_PER_STATEMENT, rows - from);
          const at = Array.from({ length: n }, (_, j) => new Date(start + Math.floor((span * (from + j)) / rows)).toISOString());
          await s`
            insert into public.petri_observations (submission_id, site_id, program_id, petri_code, growth_index, created_at)
            select ${site.submissionId}, ${site.siteId}, ${site.programId}, 'day-write', 1, a
            from unnest(${at}::timestamptz[]) a`;
        }
      }));
    } finally {
      await Promise.all(sessions.map((s) => s.end({ timeout: 5 })));
    }
    const seconds = (performance.now() - t0) / 1000;
    const [g] = await sql<{ groups: number; entries: number }[]>`
      select count(distinct (program_id, site_id, day))::int as groups, count(*)::int as entries from analytics.metrics_dirty`;
    // what the refresh will recompute: every row of the changed groups, one keyed count per group
    const [n] = await sql<{ rows: number }[]>`
      select coalesce(sum(c.n), 0)::float8 as rows
      from (select distinct program_id, site_id, day from analytics.metrics_dirty) d
      cross join lateral (
        select count(*) as n from public.petri_observations o
        where o.program_id = d.program_id and o.site_id = d.site_id
          and o.created_at >= d.day::timestamp at time zone 'UTC' and o.created_at < (d.day + 1)::timestamp at time zone 'UTC') c`;
    return { rows, statements, sites: t.length, seconds, dirtyGroups: g?.groups ?? 0, dirtyEntries: g?.entries ?? 0, groupRows: n?.rows ?? 0,
      day: new Date(start).toISOString().slice(0, 10) };
  });
}
