// Connections of the bench: one session each, named in pg_stat_activity, notices dropped.
import postgres, { type Sql } from "postgres";

/** A single-connection client whose session shows as application_name in pg_stat_activity. */
export function benchSession(url: string, name: string): Sql {
  return postgres(url, { max: 1, idle_timeout: 0, onnotice: () => {}, connection: { application_name: name } });
}

/**
 * fn in a session of its own, closed afterwards: a session that has written into every leaf is
 * slow at everything after (see the report's findings), so phases do not share one.
 */
export async function inSession<T>(url: string, name: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = benchSession(url, name);
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
