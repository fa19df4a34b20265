// Supabase Realtime's Postgres Changes, read the way Realtime reads them (supabase/realtime,
// priv/repo/tenant_schema/realtime/functions/list_changes.sql and apply_rls.sql):
//  - realtimeChanges: a logical replication slot with wal2json, format-version 2, include-pk, the
//    actions the publication publishes, add-tables = the tables pg_publication_tables lists for it
//    (names escaped as realtime.wal2json_escape_identifier does); nothing when it lists none;
//  - deliveredTo: which of those changes Realtime delivers to one subscriber of a table: the
//    change's schema and table name the subscription's table, its action the subscribed event;
//    for INSERT and UPDATE the subscriber's role must be allowed to select every primary key
//    column, and where the table has RLS, a select of the row by its primary key as that role with
//    those JWT claims must find it (DELETE is delivered to every subscriber: Realtime cannot check
//    RLS on a row that is gone).
import type { Sql } from "postgres";

export interface RealtimeChange {
  action: "I" | "U" | "D";
  schema: string;
  table: string;
  columns: Record<string, unknown>;
  identity: Record<string, unknown>;
  pk: string[];
}

export interface Subscriber {
  label: string;
  /** the JWT's role: authenticated or anon */
  role: "authenticated" | "anon";
  /** the JWT's claims (sub for a signed-in user) */
  claims: Record<string, unknown>;
  /** the subscribed table, 'schema.table' */
  table: string;
  /** the subscribed event */
  event: "*" | "INSERT" | "UPDATE" | "DELETE";
}

export async function createRealtimeSlot(sql: Sql, slot: string): Promise<void> {
  await sql`select pg_create_logical_replication_slot(${slot}, 'wal2json')`;
}

export async function dropRealtimeSlot(sql: Sql, slot: string): Promise<void> {
  await sql`select pg_drop_replication_slot(${slot})`.catch(() => {});
}

/** realtime.wal2json_escape_identifier: `\`, `,`, `.` and whitespace prefixed with `\` */
const ESCAPE = String.raw`([\\,.[:space:]])`;
const ESCAPED = String.raw`\\\1`;

/** The changes since the last call, as Realtime decodes them for the publication. */
export async function realtimeChanges(sql: Sql, slot: string, publication = "supabase_realtime"): Promise<RealtimeChange[]> {
  // decoding stops at the flushed WAL, and the test cluster commits asynchronously: one
  // synchronous commit flushes everything before it
  await sql.begin(async (tx) => {
    await tx`set local synchronous_commit = on`;
    await tx`create temporary table wal_flush_probe (x int) on commit drop`;   // writes WAL, so the commit flushes
  });
  const rows = await sql<{ data: string | null }[]>`
    with pub as (
      select concat_ws(',', case when bool_or(pp.pubinsert) then 'insert' end, case when bool_or(pp.pubupdate) then 'update' end,
                       case when bool_or(pp.pubdelete) then 'delete' end) as actions,
             coalesce(string_agg(regexp_replace(ppt.schemaname, ${ESCAPE}, ${ESCAPED}, 'g') || '.'
                                 || regexp_replace(ppt.tablename, ${ESCAPE}, ${ESCAPED}, 'g'), ',')
                        filter (where ppt.tablename is not null), '') as add_tables
      from pg_publication pp left join pg_publication_tables ppt on ppt.pubname = pp.pubname
      where pp.pubname = ${publication}
      group by pp.pubname
    )
    select case when pub.add_tables <> '' then x.data end as data
    from pub, pg_logical_slot_get_changes(${slot}, null, null,
      'format-version', '2', 'include-pk', 'true', 'include-transaction', 'false', 'include-timestamp', 'true',
      'include-type-oids', 'true', 'actions', pub.actions, 'add-tables', pub.add_tables) x`;
  return rows.filter((r) => r.data !== null).map((r) => {
    const j = JSON.parse(r.data!) as {
      action: "I" | "U" | "D"; schema: string; table: string;
      columns?: { name: string; value: unknown }[]; identity?: { name: string; value: unknown }[]; pk?: { name: string }[];
    };
    const obj = (xs?: { name: string; value: unknown }[]) => Object.fromEntries((xs ?? []).map((c) => [c.name, c.value]));
    return { action: j.action, schema: j.schema, table: j.table, columns: obj(j.columns), identity: obj(j.identity), pk: (j.pk ?? []).map((p) => p.name) };
  });
}

const EVENT = { I: "INSERT", U: "UPDATE", D: "DELETE" } as const;

/** The changes Realtime delivers to the subscriber, in order. */
export async function deliveredTo(sql: Sql, changes: RealtimeChange[], s: Subscriber): Promise<RealtimeChange[]> {
  const out: RealtimeChange[] = [];
  for (const c of changes) {
    if (`${c.schema}.${c.table}` !== s.table) continue;
    if (s.event !== "*" && s.event !== EVENT[c.action]) continue;
    if (c.action === "D") {
      out.push(c);
      continue;
    }
    const [priv] = await sql<{ pk_selectable: boolean; rls: boolean; probe: string }[]>`
      select coalesce(bool_and(has_column_privilege(${s.role}, format('%I.%I', ${c.schema}::text, ${c.table}::text)::regclass, k, 'SELECT')), false) as pk_selectable,
             (select relrowsecurity from pg_class where oid = format('%I.%I', ${c.schema}::text, ${c.table}::text)::regclass) as rls,
             format('select exists (select 1 from %I.%I where %s) as visible', ${c.schema}::text, ${c.table}::text,
                    string_agg(format('%I = %L', k, ${JSON.stringify(c.columns)}::text::jsonb ->> k), ' and ')) as probe
      from unnest(${c.pk}::text[]) k`;
    if (!priv || c.pk.length === 0 || !priv.pk_selectable) continue;   // Realtime: 400 no primary key / 401 Unauthorized
    if (!priv.rls) {
      out.push(c);
      continue;
    }
    const visible = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify(s.claims)}, true)`;
      await tx`select set_config('role', ${s.role}, true)`;
      const [v] = await tx.unsafe<{ visible: boolean }[]>(priv.probe);
      return v?.visible === true;
    });
    if (visible) out.push(c);
  }
  return out;
}
