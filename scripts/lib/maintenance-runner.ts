/**
 * Runs maintenance now the way the nightly pg_cron job does: the DO block that
 * partition_mgmt.maintenance_runner() returns, which commits after every step. (It replaces a
 * procedure: one that commits cannot pin its search_path, see migration 0600.)
 */
import type { Sql } from "postgres";

export async function runMaintenance(sql: Sql, tableKey: string | null = null): Promise<void> {
  const [row] = await sql<{ statement: string }[]>`select partition_mgmt.maintenance_runner(${tableKey}::text) as statement`;
  if (!row) throw new Error("partition_mgmt.maintenance_runner returned no row");
  await sql.unsafe(row.statement);
}
