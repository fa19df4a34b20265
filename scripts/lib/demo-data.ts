// Deterministic demo data for the legacy (unpartitioned) app schema, generated server-side with
// set-based SQL. Every id and value is a hash of (seed, position), so the same options produce the
// same rows in any database, whatever the plan shape (no random(), whose sequence depends on it).
import type { Sql } from "postgres";

export interface DemoDataOptions {
  seed: number;
  companies: number;
  programsPerCompany: number;
  sitesPerProgram: number;
  /** months of history per program, ending with the current month */
  months: number;
  petriPerSiteMonth: number;
  gasifierPerSiteMonth: number;
  /** observations per submission (a field visit records several plates at once) */
  observationsPerSubmission: number;
  /** share of gasifier rows written with program_id NULL, as older app versions did */
  gasifierNullProgramShare: number;
  /** the "now" the history ends at (default: the time of the call); fixed for reproducible data */
  asOf?: Date;
}

export const DEFAULT_DEMO: DemoDataOptions = {
  seed: 42,
  companies: 2,
  programsPerCompany: 3,
  sitesPerProgram: 4,
  months: 6,
  petriPerSiteMonth: 200,
  gasifierPerSiteMonth: 40,
  observationsPerSubmission: 10,
  gasifierNullProgramShare: 0.05,
};

export interface DemoCounts {
  companies: number;
  users: number;
  programs: number;
  sites: number;
  submissions: number;
  petri: number;
  gasifier: number;
}

export function expectedCounts(o: DemoDataOptions): DemoCounts {
  const programs = o.companies * o.programsPerCompany;
  const sites = programs * o.sitesPerProgram;
  const siteMonths = sites * o.months;
  const perSiteMonth = Math.max(o.petriPerSiteMonth, o.gasifierPerSiteMonth);
  return {
    companies: o.companies,
    users: o.companies * 2,
    programs,
    sites,
    submissions: siteMonths * Math.ceil(perSiteMonth / o.observationsPerSubmission),
    petri: siteMonths * o.petriPerSiteMonth,
    gasifier: siteMonths * o.gasifierPerSiteMonth,
  };
}

export function validateDemoOptions(o: DemoDataOptions): void {
  const ints: Exclude<keyof DemoDataOptions, "asOf" | "gasifierNullProgramShare">[] = [
    "seed", "companies", "programsPerCompany", "sitesPerProgram", "months",
    "petriPerSiteMonth", "gasifierPerSiteMonth", "observationsPerSubmission",
  ];
  for (const k of ints) {
    const v = o[k];
    if (!Number.isInteger(v) || v < 0) throw new Error(`demo option ${k} must be a non-negative integer, got ${String(v)}`);
  }
  for (const k of ["companies", "programsPerCompany", "sitesPerProgram", "months", "observationsPerSubmission"] as const) {
    if (o[k] < 1) throw new Error(`demo option ${k} must be at least 1, got ${o[k]}`);
  }
  if (o.months > 120) throw new Error(`demo option months must be at most 120, got ${o.months}`);
  if (!(o.gasifierNullProgramShare >= 0 && o.gasifierNullProgramShare <= 1)) {
    throw new Error(`demo option gasifierNullProgramShare must be between 0 and 1, got ${o.gasifierNullProgramShare}`);
  }
}

/**
 * Loads the demo data set. Refuses to run when demo rows of the same seed already exist, so a
 * second `npm start` does not duplicate data.
 */
export async function generateDemoData(
  sql: Sql,
  o: DemoDataOptions,
  progress: (step: string) => void = () => {},
): Promise<DemoCounts & { skipped: boolean }> {
  validateDemoOptions(o);
  const seed = String(o.seed);
  const [existing] = await sql<{ n: number }[]>`
    select count(*)::int as n from public.companies where company_id = md5(${seed} || ':company:1')::uuid`;
  if ((existing?.n ?? 0) > 0) return { ...(await countRows(sql)), skipped: true };

  const asOf = (o.asOf ?? new Date()).toISOString();
  const subsPerSiteMonth = Math.ceil(Math.max(o.petriPerSiteMonth, o.gasifierPerSiteMonth) / o.observationsPerSubmission);

  await sql.begin(async (tx) => {
    // Each insert below is one statement whose time grows with the options; the database-wide
    // statement_timeout (2 min on hosted and on the local stack) would cancel a large one.
    await tx`set local statement_timeout = 0`;
    progress("companies and users");
    await tx`
      insert into public.companies (company_id, name)
      select md5(${seed} || ':company:' || c)::uuid, 'Demo Company ' || c
      from generate_series(1, ${o.companies}) c`;
    // emails carry the seed: hosted auth.users has a unique index on email (users_email_partial_key)
    await tx`
      insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data)
      select md5(${seed} || ':user:' || c || ':' || u)::uuid, 'authenticated', 'authenticated',
             format('user%s.company%s.seed%s@demo.local', u, c, ${seed}::text), '{}'::jsonb, '{}'::jsonb
      from generate_series(1, ${o.companies}) c, generate_series(1, 2) u`;
    await tx`
      insert into public.users (id, email, full_name, company_id, is_company_admin)
      select md5(${seed} || ':user:' || c || ':' || u)::uuid, format('user%s.company%s.seed%s@demo.local', u, c, ${seed}::text),
             format('Demo User %s of Company %s', u, c), md5(${seed} || ':company:' || c)::uuid, u = 1
      from generate_series(1, ${o.companies}) c, generate_series(1, 2) u`;

    progress("programs and sites");
    // Programs cover the last `months` months; every third one ended last month, the others run
    // on. With one month of history a program starts this month, so none has ended yet (an end
    // before the start breaks pilot_programs_dates_ordered).
    await tx`
      insert into public.pilot_programs (program_id, name, description, start_date, end_date, status, company_id)
      select md5(${seed} || ':program:' || c || ':' || p)::uuid,
             format('Program %s-%s', c, p), 'Demo pilot program',
             (date_trunc('month', ${asOf}::timestamptz) - make_interval(months => ${o.months} - 1))::date,
             case when ended then (date_trunc('month', ${asOf}::timestamptz) - interval '1 day')::date
                  else (date_trunc('month', ${asOf}::timestamptz) + interval '6 months' - interval '1 day')::date end,
             case when ended then 'completed' else 'active' end::public.program_status,
             md5(${seed} || ':company:' || c)::uuid
      from generate_series(1, ${o.companies}) c, generate_series(1, ${o.programsPerCompany}) p,
           lateral (select p % 3 = 0 and ${o.months} > 1 as ended) e`;
    await tx`
      insert into public.sites (site_id, program_id, name, type)
      select md5(${seed} || ':site:' || c || ':' || p || ':' || s)::uuid,
             md5(${seed} || ':program:' || c || ':' || p)::uuid,
             format('Site %s-%s-%s', c, p, s),
             (array['greenhouse','storage','transport','production_facility'])[1 + (s - 1) % 4]::public.site_type
      from generate_series(1, ${o.companies}) c, generate_series(1, ${o.programsPerCompany}) p,
           generate_series(1, ${o.sitesPerProgram}) s`;

    progress("submissions");
    // One submission per field visit, spread over the month at hash-derived times.
    await tx`
      create temporary table demo_visits on commit drop as
      select md5(${seed} || ':sub:' || c || ':' || p || ':' || s || ':' || m || ':' || v)::uuid as submission_id,
             md5(${seed} || ':site:' || c || ':' || p || ':' || s)::uuid as site_id,
             md5(${seed} || ':program:' || c || ':' || p)::uuid as program_id,
             md5(${seed} || ':company:' || c)::uuid as company_id,
             c, p, s, m, v,
             -- spread over the month; the current month only up to now (no rows from the future)
             mm.month_start + ((v - 1 + (abs(hashtext(${seed} || ':t:' || c || ':' || p || ':' || s || ':' || m || ':' || v)) % 1000) / 1000.0)
                               / ${subsPerSiteMonth})::float8 * (least(mm.month_start + interval '1 month', ${asOf}::timestamptz) - mm.month_start) as visited_at
      from generate_series(1, ${o.companies}) c, generate_series(1, ${o.programsPerCompany}) p,
           generate_series(1, ${o.sitesPerProgram}) s, generate_series(1, ${o.months}) m,
           lateral (select date_trunc('month', ${asOf}::timestamptz) - make_interval(months => ${o.months} - m) as month_start) mm,
           generate_series(1, ${subsPerSiteMonth}) v`;
    await tx`
      insert into public.submissions (submission_id, site_id, program_id, temperature, humidity, company_id, created_at, updated_at)
      select submission_id, site_id, program_id,
             60 + abs(hashtext(submission_id::text || 't')) % 300 / 10.0,
             30 + abs(hashtext(submission_id::text || 'h')) % 600 / 10.0,
             company_id, visited_at, visited_at
      from demo_visits order by visited_at`;

    progress("petri observations");
    // Rows arrive in time order across all sites, as the app writes them (not clustered by site).
    await tx`
      insert into public.petri_observations (
        observation_id, submission_id, site_id, program_id, petri_code, fungicide_used,
        growth_index, growth_progression, placement, phase, outdoor_temperature, outdoor_humidity,
        metadata, created_at, updated_at)
      select md5(${seed} || ':petri:' || d.submission_id || ':' || k)::uuid,
             d.submission_id, d.site_id, d.program_id,
             format('P-%s-%s-%s-%s', d.p, d.s, d.m, k),
             case when h % 5 = 0 then 'yes' else 'no' end::public.fungicide_used,
             round((h % 10000) / 100.0, 2), round((h % 777) / 100.0, 2),
             (enum_range(null::public.petri_placement))[1 + h % 9],
             case when h % 4 = 0 then 'control' else 'experimental' end::public.petri_phase,
             round((50 + h % 400 / 10.0)::numeric, 2), round((20 + h % 700 / 10.0)::numeric, 2),
             jsonb_build_object('camera', 'cam-' || (h % 7), 'batch', d.m),
             least(d.visited_at + make_interval(secs => k % 600), ${asOf}::timestamptz), least(d.visited_at + make_interval(secs => k % 600), ${asOf}::timestamptz)
      from demo_visits d
      -- the site-month's N rows are dealt evenly over its visits: row j goes to visit floor(j*S/N)
      cross join lateral generate_series(((d.v - 1) * ${o.petriPerSiteMonth} + ${subsPerSiteMonth} - 1) / ${subsPerSiteMonth},
                                         (d.v * ${o.petriPerSiteMonth} + ${subsPerSiteMonth} - 1) / ${subsPerSiteMonth} - 1) k
      cross join lateral (select abs(hashtext(${seed} || d.submission_id::text || k)) as h) hh
      order by d.visited_at, k`;

    progress("gasifier observations");
    await tx`
      insert into public.gasifier_observations (
        observation_id, submission_id, site_id, program_id, gasifier_code, chemical_type, measure,
        linear_reading, flow_rate, anomaly, metadata, created_at, updated_at)
      select md5(${seed} || ':gas:' || d.submission_id || ':' || k)::uuid,
             d.submission_id, d.site_id,
             case when (h % 10000) < ${Math.round(o.gasifierNullProgramShare * 10000)} then null else d.program_id end,
             format('G-%s-%s-%s-%s', d.p, d.s, d.m, k),
             (enum_range(null::public.chemical_type))[1 + h % 5],
             round((h % 100000) / 1000.0, 3), round((h % 5000) / 100.0, 3), round((h % 900) / 100.0, 3),
             case when h % 50 = 0 then 'leak' else 'none' end::public.gasifier_anomaly,
             jsonb_build_object('unit', 'g-' || (h % 11)),
             least(d.visited_at + make_interval(secs => 30 + k % 600), ${asOf}::timestamptz), least(d.visited_at + make_interval(secs => 30 + k % 600), ${asOf}::timestamptz)
      from demo_visits d
      cross join lateral generate_series(((d.v - 1) * ${o.gasifierPerSiteMonth} + ${subsPerSiteMonth} - 1) / ${subsPerSiteMonth},
                                         (d.v * ${o.gasifierPerSiteMonth} + ${subsPerSiteMonth} - 1) / ${subsPerSiteMonth} - 1) k
      cross join lateral (select abs(hashtext(${seed} || d.submission_id::text || 'g' || k)) as h) hh
      order by d.visited_at, k`;
  });
  progress("analyze");
  await sql`analyze public.petri_observations`;
  await sql`analyze public.gasifier_observations`;
  return { ...(await countRows(sql)), skipped: false };
}

export async function countRows(sql: Sql): Promise<DemoCounts> {
  const [r] = await sql<DemoCounts[]>`
    select (select count(*) from public.companies)::int as companies,
           (select count(*) from public.users)::int as users,
           (select count(*) from public.pilot_programs)::int as programs,
           (select count(*) from public.sites)::int as sites,
           (select count(*) from public.submissions)::int as submissions,
           (select count(*) from public.petri_observations)::int as petri,
           (select count(*) from public.gasifier_observations)::int as gasifier`;
  if (!r) throw new Error("count query returned no row");
  return r;
}
