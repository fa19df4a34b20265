// What the figures were measured on: CPU, cores, memory, PostgreSQL version and the settings that
// move the numbers.
import { readFileSync } from "node:fs";
import os from "node:os";
import type { Sql } from "postgres";
import type { MachineInfo } from "./types.ts";

const SETTINGS = [
  "shared_buffers", "work_mem", "effective_cache_size", "max_parallel_workers_per_gather", "jit",
  "synchronous_commit", "fsync", "max_connections", "max_locks_per_transaction", "statement_timeout",
  "enable_partition_pruning", "plan_cache_mode",
] as const;

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m?.[1]) return m[1].trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? "unknown";
}

export async function machineInfo(sql: Sql, database: string): Promise<MachineInfo> {
  const [v] = await sql<{ version: string }[]>`select version()`;
  const settings: Record<string, string> = {};
  for (const name of SETTINGS) {
    const [r] = await sql.unsafe<{ setting: string }[]>(`select current_setting('${name}') as setting`);
    settings[name] = r?.setting ?? "?";
  }
  return {
    cpuModel: cpuModel(),
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    postgres: (v?.version ?? "?").replace(/ on .*$/, ""),
    settings,
    database,
  };
}
