// The day of new writes the maintenance section processes: a fixed number of petri rows (by default
// 50,000, 1% of the 5M table, the same at every scale) inserted into the live partitioned table
// with created_at spread evenly from the start of the current UTC day to now, on every site of a
// running program, as the app posts them: a submission's observations in one INSERT (statement
// triggers record the changed (program, site, day) groups once per statement, as they would for
// the app). Maintenance then recomputes what these writes changed, so its figure is comparable
// across table sizes.
import { targets } from "./inserts.ts";
import { benchSession, inSession } from "./session.ts";
import type { DayWrites } from "./types.ts";

/** rows per statement: one submission's observations (the demo shape's observationsPerSubmission) */
const ROWS_PER_STATEMENT = 10;
/** app sessions writing at once (each statement commits on its own) */
const SESSIONS = 4;

/**
 * Which day the rows go on: the current UTC day up to now, or a whole day of its own in the current
 * month (the day before, or on the 1st the day after), for a second day of writes whose groups must
 * not also hold the first day's rows.
 */
export type WriteDay = "today" | "a day of its own";

export async function writeDay(url: string, rows: number, which: WriteDay = "today"): Promise<DayWrites> {
  return inSession(url, "bench-day-writes", async (sql) => {
    // the insert section's targets: every site of a running program (its current month has a leaf)
    const t = await targets(sql);
    const [day] = await sql<{ start: Date; span_ms: number }[]>`
      with d as (select date_trunc('day', now() at time zone 'utc') as today)
      select case when ${which} = 'today' then today
                  when extract(day from today) > 1 then today - interval '1 day'
                  else today + interval '1 day' end at time zone 'utc' as start,
             case when ${which} = 'today' then (extract(epoch from (now() at time zone 'utc') - today) * 1000)::float8
                  else 86400000::float8 end as span_ms
      from d`;
    const start = day!.start.getTime();
    const span = Math.max(1, day!.span_ms - 1000);
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
