// pg_cron as on hosted Supabase: postgres schedules a job and the scheduler really runs it.
// Debian bookworm ships pg_cron 1.4, which has no seconds schedules (added in 1.5), so the job
// runs every minute and the test waits for its first run (at most ~60 s).
import { afterAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { testEnv } from "./helpers/env.ts";

describe("pg_cron", () => {
  const sql = postgres(testEnv.dbUrl, { max: 1, onnotice: () => {} });
  const job = `test_probe_${process.pid}`;
  afterAll(async () => {
    await sql`select cron.unschedule(jobid) from cron.job where jobname = ${job}`;
    await sql.end();
  });

  it("runs a job scheduled by postgres and records it in cron.job_run_details", async () => {
    await sql`create table if not exists public.zz_cron_probe (ran_at timestamptz default now(), by_role text)`;
    const [row] = await sql<{ jobid: string }[]>`
      select cron.schedule(${job}, '* * * * *', 'insert into public.zz_cron_probe (by_role) values (current_user)') as jobid`;
    const jobid = Number(row?.jobid);
    expect(jobid).toBeGreaterThan(0);
    // rescheduling under the same name replaces the job instead of adding a second one
    await sql`select cron.schedule(${job}, '* * * * *', 'insert into public.zz_cron_probe (by_role) values (current_user)')`;
    const [{ n } = { n: 0 }] = await sql<{ n: number }[]>`select count(*)::int as n from cron.job where jobname = ${job}`;
    expect(n).toBe(1);

    const deadline = Date.now() + 80_000;
    let runs: { status: string }[] = [];
    while (Date.now() < deadline) {
      runs = await sql<{ status: string }[]>`select status from cron.job_run_details where jobid = ${jobid} and status in ('succeeded', 'failed')`;
      if (runs.length > 0) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(runs[0]?.status).toBe("succeeded");
    const probes = await sql<{ by_role: string }[]>`select by_role from public.zz_cron_probe`;
    expect(probes.length).toBeGreaterThan(0);
    expect(probes[0]?.by_role).toBe("postgres");
    await sql`drop table public.zz_cron_probe`;
  });
});
