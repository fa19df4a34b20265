// Two companies' worth of petri observations in the database the functions server reads
// (TEST_DB_URL: the test cluster's `postgres` database), for the edge-function suites.
//
// Every id is random, so suites can run side by side; remove() deletes exactly these rows.
// Observations go into public.petri_observations (the live table: the legacy one before the
// swap), as the app writes them. Timestamps carry microseconds and some are shared by several
// rows, so keyset pagination is tested on ties and below the millisecond.
import { randomUUID } from "node:crypto";
import type { Sql } from "postgres";
import { connect } from "./db.ts";
import { signUserToken } from "../../scripts/lib/jwt-keys.ts";
import { testEnv } from "./env.ts";

export interface FixtureObservation {
  observation_id: string;
  company_id: string;
  program_id: string;
  site_id: string;
  submission_id: string;
  created_at: string; // ISO 8601 with microseconds, UTC ("…T10:00:00.123456Z")
  growth_index: number | null;
}

export interface FixtureCompany {
  companyId: string;
  userId: string;
  token: string;
  programId: string;
  siteIds: [string, string];
  submissionIds: [string, string]; // one per site
  observations: FixtureObservation[];
}

export interface ObservationsFixture {
  a: FixtureCompany;
  b: FixtureCompany;
  /** A signed-in user that belongs to no company. */
  loner: { userId: string; token: string };
  sql: Sql;
  remove: () => Promise<void>;
}

const DAY_MS = 86_400_000;

/** UTC ISO timestamp with microseconds. */
function isoMicros(ms: number, micros: number): string {
  return `${new Date(ms).toISOString().slice(0, 23)}${String(micros).padStart(3, "0")}Z`;
}

/**
 * n observations spread over the last `days` days across both sites; every 9th row shares the
 * previous row's timestamp; every 7th has no growth_index.
 */
function makeObservations(c: Omit<FixtureCompany, "observations" | "token">, n: number, days: number, seed: number): FixtureObservation[] {
  const now = Date.now();
  const rows: FixtureObservation[] = [];
  for (let i = 0; i < n; i++) {
    const previous = rows[rows.length - 1];
    const site = i % 3 === 0 ? 1 : 0;
    const ms = now - 60_000 - Math.floor(((i * 7_919 + seed * 104_729) % (days * 1000)) * (DAY_MS / 1000));
    rows.push({
      observation_id: randomUUID(),
      company_id: c.companyId,
      program_id: c.programId,
      site_id: c.siteIds[site]!,
      submission_id: c.submissionIds[site]!,
      created_at: i % 9 === 8 && previous ? previous.created_at : isoMicros(ms, (i * 37 + seed) % 1000),
      growth_index: i % 7 === 3 ? null : ((i * 1_237 + seed * 13) % 90_000) / 100,
    });
  }
  return rows;
}

async function insertCompany(sql: Sql, label: string, n: number, seed: number): Promise<FixtureCompany> {
  const base = {
    companyId: randomUUID(),
    userId: randomUUID(),
    programId: randomUUID(),
    siteIds: [randomUUID(), randomUUID()] as [string, string],
    submissionIds: [randomUUID(), randomUUID()] as [string, string],
  };
  await sql`insert into public.companies (company_id, name) values (${base.companyId}, ${`edge ${label}`})`;
  await sql`insert into auth.users (id, aud, role, email) values (${base.userId}, 'authenticated', 'authenticated', ${`${label}-${base.userId}@example.com`})`;
  await sql`insert into public.users (id, email, company_id) values (${base.userId}, ${`${label}-${base.userId}@example.com`}, ${base.companyId})`;
  // A short program keeps the partitions it creates few: last two months to next month.
  await sql`
    insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
    values (${base.programId}, ${`edge ${label}`},
            (date_trunc('month', now() at time zone 'UTC') - interval '2 months')::date,
            (date_trunc('month', now() at time zone 'UTC') + interval '1 month')::date,
            ${base.companyId})`;
  for (const [i, siteId] of base.siteIds.entries()) {
    await sql`insert into public.sites (site_id, program_id, name) values (${siteId}, ${base.programId}, ${`${label} site ${i + 1}`})`;
    // (the app sets the submission's company: its own policies read it)
    await sql`insert into public.submissions (submission_id, site_id, program_id, company_id) values (${base.submissionIds[i]!}, ${siteId}, ${base.programId}, ${base.companyId})`;
  }
  const observations = makeObservations(base, n, 45, seed);
  // Bound as text: as timestamptz, postgres.js would pass them through a JS Date and drop the microseconds.
  await sql`
    insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, growth_index, created_at)
    select o.id, o.submission_id, o.site_id, o.program_id, o.code, o.growth_index, o.created_at::timestamptz
    from unnest(${observations.map((o) => o.observation_id)}::text[]::uuid[],
                ${observations.map((o) => o.submission_id)}::text[]::uuid[],
                ${observations.map((o) => o.site_id)}::text[]::uuid[],
                ${observations.map((o) => o.program_id)}::text[]::uuid[],
                ${observations.map((_, i) => `${label}-${i}`)}::text[],
                ${observations.map((o) => (o.growth_index === null ? null : String(o.growth_index)))}::text[]::numeric[],
                ${observations.map((o) => o.created_at)}::text[])
         as o(id, submission_id, site_id, program_id, code, growth_index, created_at)`;
  const token = await signUserToken(testEnv.jwtSecret, { sub: base.userId, email: `${label}@example.com` });
  return { ...base, token, observations };
}

export async function createObservationsFixture(sizes: { a: number; b: number }): Promise<ObservationsFixture> {
  const sql = connect(testEnv.dbUrl, 2);
  const created: FixtureCompany[] = [];
  const lonerId = randomUUID();
  const remove = async () => {
    try {
      const programs = created.map((c) => c.programId);
      const companies = created.map((c) => c.companyId);
      const users = [...created.map((c) => c.userId), lonerId];
      if (programs.length > 0) {
        await sql`delete from public.petri_observations where program_id in ${sql(programs)}`;
        await sql`delete from public.submissions where program_id in ${sql(programs)}`;
        await sql`delete from public.sites where program_id in ${sql(programs)}`;
        await sql`delete from public.pilot_programs where program_id in ${sql(programs)}`;
      }
      await sql`delete from public.users where id in ${sql(users)}`;
      await sql`delete from auth.users where id in ${sql(users)}`;
      if (companies.length > 0) await sql`delete from public.companies where company_id in ${sql(companies)}`;
    } finally {
      await sql.end({ timeout: 5 });
    }
  };
  try {
    created.push(await insertCompany(sql, "a", sizes.a, 1));
    created.push(await insertCompany(sql, "b", sizes.b, 2));
    await sql`insert into auth.users (id, aud, role, email) values (${lonerId}, 'authenticated', 'authenticated', ${`loner-${lonerId}@example.com`})`;
    await sql`insert into public.users (id, email, company_id) values (${lonerId}, ${`loner-${lonerId}@example.com`}, null)`;
  } catch (err) {
    await remove();
    throw err;
  }
  const loner = { userId: lonerId, token: await signUserToken(testEnv.jwtSecret, { sub: lonerId }) };
  return { a: created[0]!, b: created[1]!, loner, sql, remove };
}

/** Microseconds since the epoch of an ISO 8601 timestamp of any precision and offset. */
export function epochMicros(ts: string): bigint {
  const m = /^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:?\d{2})$/.exec(ts);
  if (!m) throw new Error(`not an ISO timestamp: ${ts}`);
  const wholeSeconds = Date.parse(`${m[1]}${m[3]}`);
  return BigInt(wholeSeconds) * 1000n + BigInt((m[2] ?? "").padEnd(6, "0"));
}

/** The read API's order: created_at desc, observation_id desc. */
export function newestFirst(a: FixtureObservation, b: FixtureObservation): number {
  const ta = epochMicros(a.created_at);
  const tb = epochMicros(b.created_at);
  if (ta !== tb) return ta > tb ? -1 : 1;
  return a.observation_id > b.observation_id ? -1 : a.observation_id < b.observation_id ? 1 : 0;
}
