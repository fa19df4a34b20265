// Shared set-up of the online-migration suites: a fresh database with a small demo data set.
import type { Sql } from "postgres";
import { DEFAULT_DEMO, generateDemoData, type DemoDataOptions } from "../../scripts/lib/demo-data.ts";

export const SMALL_DEMO: DemoDataOptions = {
  ...DEFAULT_DEMO,
  companies: 2,
  programsPerCompany: 2,
  sitesPerProgram: 3,
  months: 3,
  petriPerSiteMonth: 60,
  gasifierPerSiteMonth: 30,
  gasifierNullProgramShare: 0.1,
};

export async function loadSmallDemo(sql: Sql, o: Partial<DemoDataOptions> = {}) {
  return generateDemoData(sql, { ...SMALL_DEMO, ...o });
}

/** Exact both-way EXCEPT of the legacy and the partitioned table (partition_mgmt.compare_tables). */
export async function compareTables(sql: Sql, table: string) {
  const [r] = await sql<{ only_in_legacy: string; only_in_partitioned: string; sample: string | null }[]>`
    select * from partition_mgmt.compare_tables(${table})`;
  return { onlyInLegacy: Number(r?.only_in_legacy), onlyInPartitioned: Number(r?.only_in_partitioned), sample: r?.sample ?? "" };
}

export async function phaseOf(sql: Sql, key: string): Promise<string> {
  const [r] = await sql<{ p: string }[]>`select partition_mgmt.migration_phase(${key}) as p`;
  return r?.p ?? "?";
}

/** What a migration may leave behind: triggers, helper functions, state, shadow views. */
export async function leftovers(sql: Sql, key: string) {
  const [r] = await sql<{ triggers: string[]; functions: string[]; state: number; shadows: string[] }[]>`
    select array(select tgname::text from pg_trigger where tgname like 'partition_mgmt_sync%') as triggers,
           array(select proname::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                 where n.nspname = 'partition_mgmt' and proname in (${key + "_sync_to_partitioned"}, ${key + "_sync_to_legacy"})) as functions,
           (select count(*)::int from partition_mgmt.migration_state where table_key = ${key}) as state,
           array(select relname::text from pg_class where relname like '%\\_\\_mig') as shadows`;
  return r!;
}
