// pg_cron as on hosted Supabase: jobs scheduled by postgres really run, the maintenance job
// the migration scheduled really runs the maintenance runner (a DO block that commits per step), and health()
// reports a failed job of ours.
//
// pg_cron serves one database (`postgres`, shared by the edge-function suites), and a job it
// fires there is visible to every suite reading that database (health() reports failed jobs).
// So this file runs alone, after every other file (its own vitest project, groupOrder 1), and
// everything it schedules is removed in afterAll whatever happened.
//
// Debian bookworm ships pg_cron 1.4, which has no seconds schedules (1.5 added them), so every
// job here runs each minute and the suite waits for one tick. All three jobs are scheduled
// together and waited for together: one tick (at most ~60 s, allowed 150 s on a loaded machine).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "../helpers/db.ts";
import { testEnv } from "../helpers/env.ts";
import { sleep } from "../helpers/time.ts";

const PROBE_JOB = `test_probe_${process.pid}`;
const FAILING_JOB = "partition-test-failing";   // the partition- prefix makes it one of "ours" for health()
const NIGHTLY_JOB = "partition-maintenance-nightly";
const TICK_DEADLINE_MS = 150_000;

interface RunDetail {
  jobname: string;
  status: string;
  start_time: Date;
  end_time: Date | null;
  return_message: string | null;
}

describe("pg_cron (runs alone, after the other suites)", () => {
  const sql = connect(testEnv.dbUrl);
  let mark: Date;
  let runs: Map<string, RunDetail>;

  beforeAll(async () => {
    mark = (await sql<{ t: Date }[]>`select now() as t`)[0]!.t;
    await sql`create table if not exists public.zz_cron_probe (ran_at timestamptz default now(), by_role text)`;
    await sql`select cron.schedule(${PROBE_JOB}, '* * * * *', 'insert into public.zz_cron_probe (by_role) values (current_user)')`;
    await sql`select * from partition_mgmt.set_maintenance_job(${NIGHTLY_JOB}, '* * * * *')`;
    await sql`select cron.schedule(${FAILING_JOB}, '* * * * *', 'select 1/0')`;
    runs = await firstFinishedRuns([PROBE_JOB, NIGHTLY_JOB, FAILING_JOB]);
  }, TICK_DEADLINE_MS + 30_000);

  afterAll(async () => {
    try {
      await sql`select cron.unschedule(jobid) from cron.job where jobname in (${PROBE_JOB}, ${FAILING_JOB})`;
      await sql`select * from partition_mgmt.set_maintenance_job(${NIGHTLY_JOB}, '0 2 * * *', true)`;
      await sql`delete from cron.job_run_details where command = 'select 1/0'`;
      await sql`drop table if exists public.zz_cron_probe`;
    } finally {
      await sql.end();
    }
  });

  /** Waits until each job has a finished run that started after `mark` (pg_cron's own record). */
  async function firstFinishedRuns(jobs: string[]): Promise<Map<string, RunDetail>> {
    const found = new Map<string, RunDetail>();
    const deadline = Date.now() + TICK_DEADLINE_MS;
    while (Date.now() < deadline && found.size < jobs.length) {
      const rows = await sql<RunDetail[]>`
        select distinct on (j.jobname) j.jobname, d.status, d.start_time, d.end_time, d.return_message
        from cron.job_run_details d join cron.job j using (jobid)
        where j.jobname in ${sql(jobs)} and d.start_time > ${mark} and d.status in ('succeeded', 'failed')
        order by j.jobname, d.start_time`;
      for (const r of rows) found.set(r.jobname, r);
      if (found.size < jobs.length) await sleep(1000);
    }
    return found;
  }

  it("runs a job scheduled by postgres, as postgres, and records it in cron.job_run_details", async () => {
    expect(runs.get(PROBE_JOB)?.status).toBe("succeeded");
    const probes = await sql<{ by_role: string }[]>`select by_role from public.zz_cron_probe`;
    expect(probes.length).toBeGreaterThan(0);
    expect(probes[0]?.by_role).toBe("postgres");
    // rescheduling under the same name replaces the job instead of adding a second one
    await sql`select cron.schedule(${PROBE_JOB}, '* * * * *', 'insert into public.zz_cron_probe (by_role) values (current_user)')`;
    const [{ n } = { n: 0 }] = await sql<{ n: number }[]>`select count(*)::int as n from cron.job where jobname = ${PROBE_JOB}`;
    expect(n).toBe(1);
  });

  it("fires the nightly maintenance job, whose procedure logs its run inside the job's time window", async () => {
    const run = runs.get(NIGHTLY_JOB);
    expect(run?.status).toBe("succeeded");
    const logged = await sql<{ status: string }[]>`
      select status from partition_mgmt.maintenance_log
      where action = 'run' and started_at >= ${run!.start_time}
        and started_at <= ${run!.end_time ?? new Date()}::timestamptz + interval '1 second' and status <> 'running'`;
    expect(logged.map((r) => r.status)).toEqual(expect.arrayContaining([expect.stringMatching(/^(ok|skipped)$/)]));
  });

  it("health() reports a failed run of one of our jobs", async () => {
    expect(runs.get(FAILING_JOB)?.status).toBe("failed");
    const failed = await sql<{ finding: string; detail: string }[]>`
      select finding, detail from partition_mgmt.health() where finding = 'cron job failed'`;
    expect(failed[0]?.detail).toMatch(new RegExp(`${FAILING_JOB} .*division by zero`));
  });
});
