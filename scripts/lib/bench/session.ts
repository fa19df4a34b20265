// Connections of the bench: one session each, named in pg_stat_activity, notices dropped.
import postgres, { type Sql } from "postgres";

export interface SessionOptions {
  /**
   * No statement_timeout for this session. The compute profile gives the database a 2-minute
   * timeout (as hosted), which the app's sessions keep; the bench's own long statements (copying
   * millions of rows, building indexes, vacuum, maintenance, the migration) lift it, as an
   * operator's session would.
   */
  long?: boolean;
}

/** A single-connection client whose session shows as application_name in pg_stat_activity. */
export function benchSession(url: string, name: string, o: SessionOptions = {}): Sql {
  return postgres(url, {
    max: 1, idle_timeout: 0, onnotice: () => {},
    // postgres.js leaves out startup parameters whose value is falsy (statement_timeout: 0 would
    // never reach the server): the timeout goes in the `options` parameter instead
    connection: { application_name: name, ...(o.long ? { options: "-c statement_timeout=0" } : {}) },
  });
}

/**
 * fn in a session of its own, closed afterwards: a session that has written into every leaf is
 * slow at everything after (see the report's findings), so phases do not share one.
 */
export async function inSession<T>(url: string, name: string, fn: (sql: Sql) => Promise<T>, o: SessionOptions = {}): Promise<T> {
  const sql = benchSession(url, name, o);
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
