// The SQL PostgREST sends for the supabase-js calls an app makes, sent the way PostgREST sends it,
// so the suites can tell what a call does against the live table without running PostgREST.
//
// Shapes follow PostgREST v12.2 (the version hosted Supabase runs), read from its source:
//   - the transaction: src/PostgREST/Query.hs (runQuery, setPgLocals): READ COMMITTED, READ ONLY
//     for GET and for calls of STABLE/IMMUTABLE functions, READ WRITE otherwise; then one
//     `select set_config(...)` with search_path, the role's own settings (pg_roles.rolconfig, read
//     like Config/Database.hs queryRoleSettings), role, request.jwt.claims, request.method,
//     request.path, request.headers, request.cookies, each local to the transaction;
//   - reads: src/PostgREST/Query/Statements.hs (prepareRead) around QueryBuilder.hs
//     (readPlanToQuery, getJoin: LEFT JOIN LATERAL per embed; readPlanToCountQuery: the
//     `pgrst_source_count` CTE of `count: 'exact'`);
//   - writes: Statements.hs (prepareWrite) around QueryBuilder.hs (mutatePlanToQuery) and
//     SqlFragment.hs (fromJsonBodyF: json_to_record(set) over the request body; ON CONFLICT ... DO
//     UPDATE SET col = EXCLUDED.col for `upsert`, with the pgrst.inserted counter);
//   - RPC: Statements.hs (prepareCall) around QueryBuilder.hs (callPlanToQuery, named arguments
//     from the JSON body);
//   - relationships for embedding: SchemaCache.hs (allM2OandO2ORels: foreign keys in pg_constraint
//     with conparentid = 0; allComputedRels: one-argument functions from a table's row type to a
//     table's row type, to-one when `rows 1`).
// Differences that do not change what the database does: parameter values are sent as untyped
// text (PostgREST's `unknown` encoder) except the JSON body, typed json as PostgREST types it;
// only the request headers a call needs are set.
import type { Sql } from "postgres";

export type Role = "anon" | "authenticated" | "service_role";

export interface Caller {
  role: Role;
  /** The JWT's claims, as PostgREST puts them in request.jwt.claims. */
  claims: Record<string, unknown>;
}

/** Claims of a signed-in user's access token (what supabase-js sends after sign-in). */
export function userCaller(userId: string, email = `${userId}@example.com`): Caller {
  const now = Math.floor(Date.now() / 1000);
  return {
    role: "authenticated",
    claims: { aud: "authenticated", exp: now + 3600, iat: now, iss: "supabase", sub: userId, email, role: "authenticated", aal: "aal1", session_id: "00000000-0000-4000-8000-000000000000" },
  };
}

export type FilterOp = "eq" | "neq" | "gt" | "gte" | "lt" | "lte" | "in";

/** One supabase-js filter (`.eq('site_id', x)` is `{ column: 'site_id', op: 'eq', value: x }`). */
export interface Filter {
  column: string;
  op: FilterOp;
  value: string | readonly string[];
}

export interface OrderTerm {
  column: string;
  ascending: boolean;
}

/**
 * An embedded resource in `select('*, target(*)')`: through a foreign key (to-one from the
 * referencing table, to-many from the referenced one) or through a computed relationship (a
 * function of the table's row type).
 */
export type Embed =
  | { kind: "foreign-key"; target: string; toOne: boolean; column: string; targetColumn: string }
  | { kind: "computed"; fn: string; target: string; toOne: boolean };

export interface ReadCall {
  table: string;
  filters?: readonly Filter[];
  order?: readonly OrderTerm[];
  limit?: number;
  embeds?: readonly Embed[];
  /** `count: 'exact'` (the Prefer: count=exact header) */
  countExact?: boolean;
}

export type Row = Record<string, unknown>;

export interface InsertCall {
  table: string;
  rows: readonly Row[];
  /** `upsert(rows, { onConflict })`: the conflict target's columns */
  onConflict?: readonly string[];
}

export interface UpdateCall {
  table: string;
  set: Row;
  filters: readonly Filter[];
}

export interface DeleteCall {
  table: string;
  filters: readonly Filter[];
}

export interface RpcCall {
  fn: string;
  args: Row;
}

/** One statement as PostgREST sends it, with what it needs to run it. */
export interface PostgrestStatement {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: string;
  headers: Record<string, string>;
  readOnly: boolean;
  text: string;
  params: readonly unknown[];
}

/** The body and error of a response, as supabase-js hands them to the app. */
export interface PostgrestResult<T> {
  data: T | null;
  count: number | null;
  error: PostgrestError | null;
  /** relations of the schema `partitions` (leaves, their indexes, sub-partitioned tables) the statement had locked when it finished */
  partitionLocks: number;
}

/** PostgREST's error body: the database error's SQLSTATE, message, detail and hint. */
export interface PostgrestError {
  code: string;
  message: string;
  details: string | null;
  hint: string | null;
}

const q = (ident: string): string => `"${ident.replace(/"/g, '""')}"`;
const qi = (schema: string, name: string): string => `${q(schema)}.${q(name)}`;

const RESPONSE_TAIL =
  "nullif(current_setting('response.headers', true), '') AS response_headers, " +
  "nullif(current_setting('response.status', true), '') AS response_status";

/** Column types of a table, as PostgREST's schema cache knows them (for json_to_recordset). */
async function columnTypes(sql: Sql, table: string): Promise<Map<string, string>> {
  const rows = await sql<{ name: string; type: string }[]>`
    select a.attname::text as name, pg_catalog.format_type(a.atttypid, a.atttypmod) as type
    from pg_catalog.pg_attribute a
    where a.attrelid = ${`public.${table}`}::regclass and a.attnum > 0 and not a.attisdropped`;
  return new Map(rows.map((r) => [r.name, r.type]));
}

class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

function filterSql(table: string, f: Filter, p: Params): string {
  const col = `${qi("public", table)}.${q(f.column)}`;
  if (f.op === "in") {
    const list = typeof f.value === "string" ? [f.value] : f.value;
    return ` ${col} = ANY (${p.add(`{${list.map((v) => `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`).join(",")}}`)}) `;
  }
  const ops: Record<Exclude<FilterOp, "in">, string> = { eq: "=", neq: "<>", gt: ">", gte: ">=", lt: "<", lte: "<=" };
  if (typeof f.value !== "string") throw new Error(`filter ${f.op} on ${f.column} takes one value`);
  return ` ${col} ${ops[f.op]} ${p.add(f.value)}`;
}

function whereSql(table: string, filters: readonly Filter[] | undefined, p: Params): string {
  return filters && filters.length > 0 ? `WHERE ${filters.map((f) => filterSql(table, f, p)).join(" AND ")}` : "";
}

function embedJoin(table: string, e: Embed): { select: string; join: string } {
  const relName = e.kind === "computed" ? e.fn : e.target;
  const alias = `${e.target}_1`;
  const agg = q(`${table}_${relName}_1`);
  const from = e.kind === "computed"
    ? `FROM ${qi("public", e.fn)}(${q(table)}::${qi("public", table)}) AS ${q(alias)}`
    : `FROM ${qi("public", e.target)} AS ${q(alias)}`;
  const where = e.kind === "computed" ? "" : `WHERE ${q(alias)}.${q(e.targetColumn)} = ${qi("public", table)}.${q(e.column)}`;
  const sub = `SELECT ${q(alias)}.* ${from}  ${where}   `;
  if (e.toOne) {
    return { select: `row_to_json(${agg}.*)::jsonb AS ${q(relName)}`, join: `LEFT JOIN LATERAL ( ${sub} ) AS ${agg} ON TRUE` };
  }
  return {
    select: `COALESCE( ${agg}.${agg}, '[]') AS ${q(relName)}`,
    join: `LEFT JOIN LATERAL ( SELECT json_agg(${agg})::jsonb AS ${agg} FROM (${sub} ) AS ${agg} ) AS ${agg} ON TRUE`,
  };
}

/** `supabase.from(table).select('*, embeds…', { count })` with filters, order and limit. */
export function readStatement(c: ReadCall): PostgrestStatement {
  const p = new Params();
  const embeds = (c.embeds ?? []).map((e) => embedJoin(c.table, e));
  const where = whereSql(c.table, c.filters, p);
  const order = c.order && c.order.length > 0
    ? `ORDER BY ${c.order.map((o) => `${qi("public", c.table)}.${q(o.column)} ${o.ascending ? "ASC" : "DESC"} `).join(", ")}`
    : "";
  const limit = c.limit === undefined ? "" : `LIMIT ${p.add(String(c.limit))} OFFSET ${p.add("0")}`;
  const source = `SELECT ${[`${qi("public", c.table)}.*`, ...embeds.map((e) => e.select)].join(", ")} FROM ${qi("public", c.table)} ${embeds.map((e) => e.join).join(" ")} ${where}  ${order} ${limit}`;
  // the count reads the same rows without the embeds, the order and the page
  const countWhere = c.countExact ? whereSql(c.table, c.filters, p) : "";
  const countCte = c.countExact ? `, pgrst_source_count AS (SELECT 1 FROM ${qi("public", c.table)}${countWhere ? ` ${countWhere}` : ""})` : "";
  const text =
    `WITH pgrst_source AS ( ${source} ) ${countCte} ` +
    `SELECT ${c.countExact ? "(SELECT pg_catalog.count(*) FROM pgrst_source_count)" : "null::bigint"} AS total_result_set, ` +
    `pg_catalog.count(_postgrest_t) AS page_total, coalesce(json_agg(_postgrest_t), '[]') AS body, ${RESPONSE_TAIL}, '' AS response_inserted ` +
    `FROM ( SELECT * FROM pgrst_source ) _postgrest_t`;
  return {
    method: "GET",
    path: `/${c.table}`,
    headers: c.countExact ? { accept: "application/json", prefer: "count=exact" } : { accept: "application/json" },
    readOnly: true,
    text,
    params: p.values,
  };
}

function writeStatement(table: string, mutation: string, p: Params, o: { method: PostgrestStatement["method"]; prefer: string; inserted: boolean }): PostgrestStatement {
  const text =
    `WITH pgrst_source AS (${mutation}) ` +
    `SELECT '' AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total, array[]::text[] AS header, ` +
    `coalesce(json_agg(_postgrest_t), '[]') AS body, ${RESPONSE_TAIL}, ` +
    `${o.inserted ? "nullif(current_setting('pgrst.inserted', true),'')::int" : "''"} AS response_inserted ` +
    `FROM (SELECT ${q(table)}.* FROM ${q("pgrst_source")} AS ${q(table)}    ) _postgrest_t`;
  return { method: o.method, path: `/${table}`, headers: { accept: "application/json", prefer: o.prefer, "content-type": "application/json" }, readOnly: false, text, params: p.values };
}

function jsonBody(p: Params, body: unknown, cols: readonly string[], types: Map<string, string>, o: { select: boolean; limitOne: boolean }): string {
  const typed = cols.map((col) => {
    const t = types.get(col);
    if (!t) throw new Error(`no column ${col}`);
    return `${q(col)} ${t}`;
  });
  const fn = Array.isArray(body) ? "json_to_recordset" : "json_to_record";
  return `${o.select ? `SELECT ${cols.map((col) => `${q("pgrst_body")}.${q(col)}`).join(", ")} ` : ""}` +
    `FROM (SELECT ${p.add(body)} AS json_data) pgrst_payload, ` +
    `LATERAL (SELECT ${cols.map(q).join(", ")} FROM ${fn}(pgrst_payload.json_data) AS _(${typed.join(", ")}) ${o.limitOne ? "LIMIT 1" : ""}) pgrst_body `;
}

/** `supabase.from(table).insert(rows).select()`, or `.upsert(rows, { onConflict }).select()`. */
export async function insertStatement(sql: Sql, c: InsertCall): Promise<PostgrestStatement> {
  const types = await columnTypes(sql, c.table);
  const cols = [...new Set(c.rows.flatMap((r) => Object.keys(r)))];
  const p = new Params();
  const counted = (sign: "+" | "-") =>
    `set_config('pgrst.inserted', (coalesce(nullif(current_setting('pgrst.inserted', true), '')::int, 0) ${sign} 1)::text, true) <> '${sign === "+" ? "0" : "-1"}'`;
  const conflict = c.onConflict
    ? ` ON CONFLICT(${c.onConflict.map(q).join(", ")}) DO UPDATE SET ${cols.map((col) => `${q(col)} = EXCLUDED.${q(col)}`).join(", ")}WHERE ${counted("-")}`
    : "";
  const mutation =
    `INSERT INTO ${qi("public", c.table)}(${cols.map(q).join(", ")}) ` +
    jsonBody(p, c.rows, cols, types, { select: true, limitOne: false }) +
    (c.onConflict ? `WHERE ${counted("+")}` : "") +
    `${conflict} RETURNING ${qi("public", c.table)}.*`;
  return writeStatement(c.table, mutation, p, {
    method: "POST",
    prefer: c.onConflict ? "return=representation,resolution=merge-duplicates" : "return=representation",
    inserted: c.onConflict !== undefined,
  });
}

/** `supabase.from(table).update(set).eq(…).select()` */
export async function updateStatement(sql: Sql, c: UpdateCall): Promise<PostgrestStatement> {
  const types = await columnTypes(sql, c.table);
  const cols = Object.keys(c.set);
  const p = new Params();
  const body = jsonBody(p, c.set, cols, types, { select: false, limitOne: false });
  const mutation =
    `UPDATE ${qi("public", c.table)} SET ${cols.map((col) => `${q(col)} = ${q("pgrst_body")}.${q(col)}`).join(", ")} ` +
    `${body} ${whereSql(c.table, c.filters, p).replace(/^WHERE/, " WHERE ")} RETURNING ${qi("public", c.table)}.*`;
  return writeStatement(c.table, mutation, p, { method: "PATCH", prefer: "return=representation", inserted: false });
}

/** `supabase.from(table).delete().eq(…).select()` */
export function deleteStatement(c: DeleteCall): PostgrestStatement {
  const p = new Params();
  const mutation = `DELETE FROM ${qi("public", c.table)} ${whereSql(c.table, c.filters, p).replace(/^WHERE/, " WHERE ")} RETURNING ${qi("public", c.table)}.*`;
  return writeStatement(c.table, mutation, p, { method: "DELETE", prefer: "return=representation", inserted: false });
}

/**
 * `supabase.rpc(fn, args)`: a POST with named arguments. Read only when the function is STABLE or
 * IMMUTABLE, as PostgREST decides from its volatility.
 */
export async function rpcStatement(sql: Sql, c: RpcCall): Promise<PostgrestStatement> {
  const [fn] = await sql<{ names: string[]; types: string[]; volatile: boolean; scalar: boolean }[]>`
    select p.proargnames::text[] as names,
           array(select pg_catalog.format_type(t, null) from unnest(p.proargtypes) t) as types,
           p.provolatile = 'v' as volatile,
           not exists (select from pg_catalog.pg_class c where c.reltype = p.prorettype) as scalar
    from pg_catalog.pg_proc p where p.oid = ${`public.${c.fn}`}::regproc`;
  if (!fn) throw new Error(`no function public.${c.fn}`);
  const types = new Map(fn.names.map((n, i) => [n, fn.types[i] ?? "text"]));
  const names = Object.keys(c.args);
  const p = new Params();
  const call = `${qi("public", c.fn)}(${names.map((n) => `${q(n)} := pgrst_body.${q(n)}`).join(", ")})`;
  const source =
    `SELECT ${fn.scalar ? "pgrst_call.pgrst_scalar" : `${q("pgrst_call")}.*`} ` +
    jsonBody(p, c.args, names, types, { select: false, limitOne: true }) +
    `, LATERAL ${fn.scalar ? `(SELECT ${call} pgrst_scalar) pgrst_call` : `${call} pgrst_call`}`;
  const text =
    `WITH pgrst_source AS (${source}) ` +
    `SELECT null::bigint AS total_result_set, ${fn.scalar ? "1" : "pg_catalog.count(_postgrest_t)"} AS page_total, ` +
    `${fn.scalar ? "coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')" : "coalesce(json_agg(_postgrest_t), '[]')"} AS body, ` +
    `${RESPONSE_TAIL}, '' AS response_inserted ` +
    `FROM (SELECT ${q(c.fn)}.* FROM ${q("pgrst_source")} AS ${q(c.fn)}    ) _postgrest_t`;
  return { method: "POST", path: `/rpc/${c.fn}`, headers: { accept: "application/json", "content-type": "application/json" }, readOnly: !fn.volatile, text, params: p.values };
}

interface PgErrorLike {
  code?: string;
  message: string;
  detail?: string;
  hint?: string;
}

function isPgError(e: unknown): e is PgErrorLike {
  return typeof e === "object" && e !== null && "message" in e && typeof (e as { message: unknown }).message === "string";
}

/** Thrown to end a transaction whose result was already taken (send with rollback). */
class RolledBack<T> extends Error {
  constructor(readonly result: PostgrestResult<T>) {
    super("rolled back");
  }
}

/**
 * Runs one statement as PostgREST does: its own transaction, the request's settings, the
 * statement; commits (a failed statement rolls back and answers PostgREST's error body).
 * With { rollback: true } the answer is the same but nothing is kept (a probe of what a caller
 * may do that leaves the data as it was).
 */
export async function send<T = Row[]>(sql: Sql, caller: Caller, s: PostgrestStatement, o: { rollback?: boolean } = {}): Promise<PostgrestResult<T>> {
  try {
    const result = await sql.begin(`isolation level read committed ${s.readOnly ? "read only" : "read write"}`, async (tx) => {
      const [role] = await tx<{ settings: string[] | null }[]>`select rolconfig as settings from pg_catalog.pg_roles where rolname = ${caller.role}`;
      const roleSettings = (role?.settings ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as [string, string]);
      const locals: [string, string][] = [
        ["search_path", '"public", "public", "extensions"'],
        ...roleSettings,
        ["role", caller.role],
        ["request.jwt.claims", JSON.stringify(caller.claims)],
        ["request.method", s.method],
        ["request.path", s.path],
        ["request.headers", JSON.stringify(s.headers)],
        ["request.cookies", "{}"],
      ];
      await tx.unsafe(`select ${locals.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(", ")}`, locals.flat());
      const [r] = await tx.unsafe<{ total_result_set: string | null; page_total: string; body: unknown }[]>(
        s.text, s.params.map((v) => (typeof v === "string" ? v : tx.typed(v as never, 114))));
      const [locks] = await tx<{ n: number }[]>`
        select count(distinct l.relation)::int as n from pg_catalog.pg_locks l
        join pg_catalog.pg_class c on c.oid = l.relation join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where l.pid = pg_catalog.pg_backend_pid() and l.locktype = 'relation' and n.nspname = 'partitions'`;
      const total = r?.total_result_set;
      const answer: PostgrestResult<T> = { data: (r?.body ?? null) as T | null, count: total === null || total === undefined || total === "" ? null : Number(total), error: null, partitionLocks: locks?.n ?? 0 };
      if (o.rollback) throw new RolledBack(answer);
      return answer;
    });
    return result;
  } catch (e) {
    if (e instanceof RolledBack) return e.result as PostgrestResult<T>;
    if (!isPgError(e) || e.code === undefined) throw e;
    return { data: null, count: null, error: { code: e.code, message: e.message, details: e.detail ?? null, hint: e.hint ?? null }, partitionLocks: 0 };
  }
}

/** A relationship PostgREST's schema cache finds for `select('*, target(*)')` from `table`. */
export interface SchemaRelationship {
  kind: "foreign-key" | "computed";
  name: string;
  table: string;
  target: string;
}

/**
 * The relationships between two tables of `public` that PostgREST's schema cache would load
 * (foreign keys declared on a table, not on its partitions; computed relationships). None means
 * `select('*, target(*)')` is answered 400 PGRST200 "Could not find a relationship between …".
 */
export async function relationships(sql: Sql, table: string, target: string): Promise<SchemaRelationship[]> {
  return sql<SchemaRelationship[]>`
    select 'foreign-key' as kind, c.conname::text as name, t.relname::text as table, f.relname::text as target
    from pg_catalog.pg_constraint c
    join pg_catalog.pg_class t on t.oid = c.conrelid join pg_catalog.pg_class f on f.oid = c.confrelid
    where c.contype = 'f' and c.conparentid = 0 and c.connamespace = 'public'::regnamespace
      and ((t.relname = ${table} and f.relname = ${target}) or (t.relname = ${target} and f.relname = ${table}))
    union all
    select 'computed', p.proname::text, a.relname::text, r.relname::text
    from pg_catalog.pg_proc p
    join pg_catalog.pg_class a on a.reltype = p.proargtypes[0] join pg_catalog.pg_class r on r.reltype = p.prorettype
    where p.pronargs = 1 and p.pronamespace = 'public'::regnamespace and a.relname = ${table} and p.proname = ${target}
    order by 1, 2`;
}
