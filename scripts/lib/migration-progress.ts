// A migration's progress as one terminal line: the row partition_mgmt.monitor_migration returns
// (numerics as text, as postgres.js reads them) drawn as a bar with rows, rate and ETA.

export interface MonitorRow {
  table_key: string;
  phase: string;
  rows_copied: string;
  rows_scanned: string;
  rows_total: string | null;
  percent: string;
  rows_per_second: string | null;
  eta: string | null;
  pending_in_defaults: string;
  batches: string;
  last_error: string | null;
  swap_lock_ms: string | null;
}

export function progressBar(m: MonitorRow, width = 30): string {
  const pct = Math.min(100, Number(m.percent));
  const filled = Math.round((pct / 100) * width);
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${pct.toFixed(1).padStart(5)}%  ${m.rows_scanned}/${m.rows_total === null || m.rows_total === undefined ? "?" : Math.max(Number(m.rows_total), Number(m.rows_scanned))} rows` +
    `  ${m.rows_per_second ?? "-"} rows/s  eta ${m.eta ?? "-"}  ${m.phase}  defaults ${m.pending_in_defaults}`;
}
