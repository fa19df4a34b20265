// A migration from a catalog difference: what turns the database the migrations build into the one
// the sources build. Docker-free stand-in for `supabase db diff` (which needs a shadow database in
// Docker): both databases are built on a throwaway cluster (scripts/db-diff.ts), compared fact by
// fact (scripts/lib/catalog.ts) and each changed object is written from the sources' catalog.
// What a catalog cannot say safely (dropping a table or a column, the rows of a configuration
// table, the partitions a tree builds at run time) is listed for the author to write by hand.
import type { Sql } from "postgres";
import type { CatalogChange } from "./catalog.ts";

export interface GeneratedMigration {
  /** the statements, in an order that applies: schemas, tables, functions, views, constraints, indexes, triggers, policies, grants, comments */
  sql: string;
  /** objects whose change the generator does not write, each with why */
  byHand: string[];
}

type Section = "schema" | "table" | "function" | "view" | "constraint" | "index" | "trigger" | "policy" | "grant" | "comment";
const ORDER: Section[] = ["schema", "table", "function", "view", "constraint", "index", "trigger", "policy", "grant", "comment"];

const lit = (s: string | null) => (s === null ? "null" : `'${s.replaceAll("'", "''")}'`);

interface FnRow { key: string; sig: string; def: string; kind: string; comment: string | null; acl: string[] | null; owner: string }
interface GrantRow { grantee: string; privileges: string[] }

/** Objects of a change list, grouped, each with the facts that changed. */
function byObject(changes: CatalogChange[]): Map<string, CatalogChange[]> {
  const m = new Map<string, CatalogChange[]>();
  for (const c of changes) m.set(c.object, [...(m.get(c.object) ?? []), c]);
  return m;
}

async function functionRow(sql: Sql, key: string): Promise<FnRow | undefined> {
  const [r] = await sql<FnRow[]>`
    select format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as key,
           format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes)) as sig,
           case when p.prokind = 'a' then '' else pg_get_functiondef(p.oid) end as def, p.prokind::text as kind,
           obj_description(p.oid, 'pg_proc') as comment, p.proacl::text[] as acl, pg_get_userbyid(p.proowner) as owner
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) = ${key}`;
  return r;
}

async function grantsOf(sql: Sql, kind: "function" | "relation" | "schema", key: string): Promise<GrantRow[]> {
  const rows = await sql<GrantRow[]>`
    with o as (
      select p.proacl as acl, p.proowner as owner, 'f' as t from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where ${kind} = 'function' and format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) = ${key}
      union all
      select c.relacl, c.relowner, case c.relkind when 'S' then 's' else 'r' end from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where ${kind} = 'relation' and format('%I.%I', n.nspname, c.relname) = ${key}
      union all
      select n.nspacl, n.nspowner, 'n' from pg_namespace n where ${kind} = 'schema' and quote_ident(n.nspname) = ${key}
    )
    select case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end as grantee,
           array_agg(a.privilege_type order by a.privilege_type) as privileges
    from o, aclexplode(coalesce(o.acl, acldefault(o.t::"char", o.owner))) a
    where a.grantee <> o.owner
    group by a.grantee`;
  return rows;
}

/**
 * Revoke what A grants, grant what B grants (owners keep theirs). A new object (a null) may have
 * been given PUBLIC's defaults and the default privileges Supabase's image sets for its API roles:
 * everything is revoked from those first, so it ends with exactly the sources' grants.
 */
function regrant(onWhat: string, a: GrantRow[] | null, b: GrantRow[]): string[] {
  if (a === null) {
    return [`revoke all on ${onWhat} from public, anon, authenticated, service_role;`,
            ...b.map((g) => `grant ${g.privileges.join(", ").toLowerCase()} on ${onWhat} to ${g.grantee};`)];
  }
  const out: string[] = [];
  const grantees = new Set([...a.map((g) => g.grantee), ...b.map((g) => g.grantee)]);
  for (const g of [...grantees].sort()) {
    const before = a.find((x) => x.grantee === g)?.privileges ?? [];
    const after = b.find((x) => x.grantee === g)?.privileges ?? [];
    const revoke = before.filter((p) => !after.includes(p));
    const grant = after.filter((p) => !before.includes(p));
    if (revoke.length) out.push(`revoke ${revoke.join(", ").toLowerCase()} on ${onWhat} from ${g};`);
    if (grant.length) out.push(`grant ${grant.join(", ").toLowerCase()} on ${onWhat} to ${g};`);
  }
  return out;
}

interface ColumnRow { name: string; type: string; notnull: boolean; def: string | null; identity: string; generated: string; comment: string | null }

async function columnsOf(sql: Sql, table: string): Promise<ColumnRow[]> {
  return sql<ColumnRow[]>`
    select quote_ident(a.attname) as name, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as notnull,
           pg_get_expr(d.adbin, d.adrelid) as def, a.attidentity::text as identity, a.attgenerated::text as generated,
           col_description(a.attrelid, a.attnum) as comment
    from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where a.attrelid = to_regclass(${table}) and a.attnum > 0 and not a.attisdropped order by a.attnum`;
}

function columnDdl(c: ColumnRow): string {
  if (c.generated === "s") return `${c.name} ${c.type} generated always as (${c.def}) stored`;
  const identity = c.identity === "a" ? " generated always as identity" : c.identity === "d" ? " generated by default as identity" : "";
  return `${c.name} ${c.type}${c.def !== null && !identity ? ` default ${c.def}` : ""}${c.notnull ? " not null" : ""}${identity}`;
}

const parseOn = (object: string, kind: string): { name: string; table: string } | null => {
  const m = new RegExp(`^${kind} (.+?) on (.+)$`).exec(object);
  return m ? { name: m[1] ?? "", table: m[2] ?? "" } : null;
};

/**
 * The statements that turn database A (built from the migrations) into B (built from the sources),
 * for the given differences between their catalogs.
 */
export async function migrationFromDiff(a: Sql, b: Sql, changes: CatalogChange[]): Promise<GeneratedMigration> {
  const out = new Map<Section, string[]>(ORDER.map((s) => [s, []]));
  const add = (s: Section, ...stmts: string[]) => out.get(s)?.push(...stmts);
  const byHand: string[] = [];
  const objects = byObject(changes);

  for (const [object, facts] of objects) {
    const factNames = new Set(facts.map((f) => f.fact));
    const inA = facts.some((f) => f.before !== null);
    const inB = facts.some((f) => f.after !== null);
    const [kindWord] = object.split(" ");

    if (object.startsWith("function ")) {
      const key = object.slice("function ".length);
      const fa = await functionRow(a, key);
      const fb = await functionRow(b, key);
      if (!fb) {
        if (fa) add("function", `drop function ${fa.sig};`);
        continue;
      }
      if (fb.kind === "a") { byHand.push(`${object}: an aggregate`); continue; }
      if (!fa || factNames.has("definition") || factNames.has("security definer") || factNames.has("settings")) {
        if (fa && fa.def.split("\n").find((l) => l.startsWith(" RETURNS")) !== fb.def.split("\n").find((l) => l.startsWith(" RETURNS"))) {
          add("function", `drop function ${fa.sig};`);
        }
        add("function", `${fb.def.trimEnd()};`);
      }
      if ([...factNames].some((f) => f.startsWith("grant ")) || !fa) {
        add("grant", ...regrant(`function ${fb.sig}`, fa ? await grantsOf(a, "function", key) : null, await grantsOf(b, "function", key)));
      }
      if (factNames.has("comment")) add("comment", `comment on function ${fb.sig} is ${lit(fb.comment)};`);
      if (factNames.has("owner") && fa) byHand.push(`${object}: owner changed`);
      continue;
    }

    if (object.startsWith("policy ")) {
      const p = parseOn(object, "policy");
      if (!p) { byHand.push(object); continue; }
      if (factNames.has("definition")) {
        add("policy", `drop policy if exists ${p.name} on ${p.table};`);
        if (inB) {
          const [r] = await b<{ ddl: string }[]>`
            select format('create policy %I on %s as %s for %s to %s%s%s;', pol.polname, pol.polrelid::regclass,
                          case when pol.polpermissive then 'permissive' else 'restrictive' end,
                          case pol.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update' when 'd' then 'delete' else 'all' end,
                          coalesce((select string_agg(case when x = 0 then 'public' else quote_ident(pg_get_userbyid(x)) end, ', ') from unnest(pol.polroles) x), 'public'),
                          ' using (' || pg_get_expr(pol.polqual, pol.polrelid) || ')',
                          ' with check (' || pg_get_expr(pol.polwithcheck, pol.polrelid) || ')') as ddl
            from pg_policy pol where pol.polrelid = to_regclass(${p.table}) and quote_ident(pol.polname) = ${p.name}`;
          if (r) add("policy", r.ddl);
        }
      }
      const comment = facts.find((f) => f.fact === "comment");
      if (comment) add("comment", `comment on policy ${p.name} on ${p.table} is ${lit(comment.after)};`);
      continue;
    }

    if (object.startsWith("trigger ")) {
      const t = parseOn(object, "trigger");
      if (!t) { byHand.push(object); continue; }
      if (factNames.has("definition")) {
        add("trigger", `drop trigger if exists ${t.name} on ${t.table};`);
        if (inB) {
          const [r] = await b<{ ddl: string; enabled: string }[]>`
            select pg_get_triggerdef(tg.oid) as ddl, tg.tgenabled::text as enabled from pg_trigger tg
            where tg.tgrelid = to_regclass(${t.table}) and quote_ident(tg.tgname) = ${t.name}`;
          if (r) {
            add("trigger", `${r.ddl};`);
            if (r.enabled === "D") add("trigger", `alter table ${t.table} disable trigger ${t.name};`);
            else if (r.enabled !== "O") byHand.push(`${object}: enabled state ${r.enabled}`);
          }
        }
      }
      const comment = facts.find((f) => f.fact === "comment");
      if (comment) add("comment", `comment on trigger ${t.name} on ${t.table} is ${lit(comment.after)};`);
      continue;
    }

    if (object.startsWith("constraint ")) {
      const k = parseOn(object, "constraint");
      if (!k) { byHand.push(object); continue; }
      const def = facts.find((f) => f.fact === "definition");
      if (def) {
        if (def.before !== null) add("constraint", `alter table ${k.table} drop constraint ${k.name};`);
        if (def.after !== null) add("constraint", `alter table ${k.table} add constraint ${k.name} ${def.after};`);
      }
      const comment = facts.find((f) => f.fact === "comment");
      if (comment) add("comment", `comment on constraint ${k.name} on ${k.table} is ${lit(comment.after)};`);
      continue;
    }

    if (object.startsWith("index ")) {
      const name = object.slice("index ".length);
      const def = facts.find((f) => f.fact === "index definition");
      if (def) {
        const [owned] = await b<{ n: number }[]>`select count(*)::int as n from pg_constraint where conindid = to_regclass(${name})`;
        const [ownedA] = await a<{ n: number }[]>`select count(*)::int as n from pg_constraint where conindid = to_regclass(${name})`;
        if ((owned?.n ?? 0) > 0 || (ownedA?.n ?? 0) > 0) continue;   // a constraint's index: comes with the constraint
        if (def.before !== null) add("index", `drop index ${name};`);
        if (def.after !== null) add("index", `${def.after};`);
      }
      continue;
    }

    if (object.startsWith("schema ")) {
      const name = object.slice("schema ".length);
      if (!inA) add("schema", `create schema if not exists ${name};`);
      else if (!inB) { byHand.push(`${object}: dropped`); continue; }
      if ([...factNames].some((f) => f.startsWith("grant "))) add("grant", ...regrant(`schema ${name}`, await grantsOf(a, "schema", name), await grantsOf(b, "schema", name)));
      const comment = facts.find((f) => f.fact === "comment");
      if (comment) add("comment", `comment on schema ${name} is ${lit(comment.after)};`);
      if (factNames.has("owner")) byHand.push(`${object}: owner changed`);
      continue;
    }

    if (kindWord === "table" || kindWord === "view" || object.startsWith("materialized view ") || kindWord === "sequence") {
      const isMat = object.startsWith("materialized view ");
      const kind = isMat ? "materialized view" : kindWord ?? "table";
      const name = object.slice(kind.length + 1);
      const exists = async (db: Sql) => (await db<{ e: boolean }[]>`select to_regclass(${name}) is not null as e`)[0]?.e ?? false;
      const inA = await exists(a);
      const inB = await exists(b);
      if (kind === "sequence" && inB) {
        const [owned] = await b<{ n: number }[]>`select count(*)::int as n from pg_depend where objid = to_regclass(${name}) and deptype in ('a', 'i')`;
        if ((owned?.n ?? 0) > 0) continue;   // a serial or identity column's: comes with its column
      }
      for (const f of [...factNames]) if (f.startsWith("sequence ")) factNames.delete(f);   // its column's sequence, likewise
      if (name.startsWith("partitions.") || name.startsWith("partitions_archive.")) {
        byHand.push(`${object}: a partition the trees build at run time (${[...factNames].join(", ")})`);
        continue;
      }
      if (!inB) { byHand.push(`${object}: gone from the sources (drop it by hand, with what its data needs)`); continue; }
      if (factNames.has("rows")) byHand.push(`${object}: its rows differ (configuration the migrations seed: write the insert or update)`);
      const onlyRows = [...factNames].every((f) => f === "rows");
      if (onlyRows) continue;
      if (kind === "view" || isMat) {
        if (factNames.has("definition")) {
          if (isMat) byHand.push(`${object}: a materialized view's definition (drop and create it, then refresh)`);
          else {
            const [r] = await b<{ def: string }[]>`select pg_get_viewdef(to_regclass(${name})) as def`;
            add("view", `create or replace view ${name} as\n${(r?.def ?? "").trimEnd().replace(/;$/, "")};`);
          }
        }
      } else if (kind === "table") {
        const colsB = await columnsOf(b, name);
        if (!inA) {
          const [pk] = await b<{ key: string | null }[]>`select pg_get_partkeydef(to_regclass(${name})) as key`;
          add("table", `create table ${name} (\n  ${colsB.map(columnDdl).join(",\n  ")}\n)${pk?.key ? ` partition by ${pk.key}` : ""};`);
        } else {
          const colsA = await columnsOf(a, name);
          for (const c of colsB) {
            const was = colsA.find((x) => x.name === c.name);
            if (!was) { add("table", `alter table ${name} add column ${columnDdl(c)};`); continue; }
            if (was.type !== c.type) add("table", `alter table ${name} alter column ${c.name} type ${c.type};`);
            if (was.def !== c.def && !c.identity) add("table", c.def === null ? `alter table ${name} alter column ${c.name} drop default;` : `alter table ${name} alter column ${c.name} set default ${c.def};`);
            if (was.notnull !== c.notnull) add("table", `alter table ${name} alter column ${c.name} ${c.notnull ? "set" : "drop"} not null;`);
            if (was.identity !== c.identity || was.generated !== c.generated) byHand.push(`${object}: column ${c.name}'s identity or generation`);
          }
          for (const c of colsA) if (!colsB.some((x) => x.name === c.name)) byHand.push(`${object}: column ${c.name} is gone from the sources (drop it by hand)`);
          const order = (cols: ColumnRow[]) => cols.map((c) => c.name).filter((n) => colsA.some((x) => x.name === n)).join(",");
          if (order(colsA) !== order(colsB)) byHand.push(`${object}: the columns' order differs`);
        }
        for (const c of colsB) {
          const f = facts.find((x) => x.fact === `column ${c.name} comment`);
          if (f) add("comment", `comment on column ${name}.${c.name} is ${lit(c.comment)};`);
        }
        const rls = facts.find((f) => f.fact === "rls");
        if (rls?.after) {
          const enabled = /enabled t(rue)?,/.test(rls.after);
          const forced = /forced t(rue)?$/.test(rls.after);
          add("table", `alter table ${name} ${enabled ? "enable" : "disable"} row level security;`, `alter table ${name} ${forced ? "force" : "no force"} row level security;`);
        }
        const ri = facts.find((f) => f.fact === "replica identity");
        if (ri?.after && inA) byHand.push(`${object}: replica identity ${ri.after}`);
      } else {
        byHand.push(`${object}: a sequence (${[...factNames].join(", ")})`);
        continue;
      }
      if ([...factNames].some((f) => f.startsWith("grant ")) || !inA) {
        add("grant", ...regrant(`${kind === "sequence" ? "sequence" : "table"} ${name}`, inA ? await grantsOf(a, "relation", name) : null, await grantsOf(b, "relation", name)));
      }
      const comment = facts.find((f) => f.fact === "comment");
      if (comment) add("comment", `comment on ${kind} ${name} is ${lit(comment.after)};`);
      const handled = /^(kind|owner|rls|replica identity|definition|comment|rows|grant .*|column .*|options)$/;
      for (const f of factNames) if (!handled.test(f)) byHand.push(`${object}: ${f}`);
      if (factNames.has("options")) byHand.push(`${object}: storage options`);
      if (factNames.has("owner") && inA) byHand.push(`${object}: owner changed`);
      continue;
    }

    byHand.push(`${object}: ${[...factNames].join(", ")}`);
  }

  const parts: string[] = [];
  for (const s of ORDER) {
    const stmts = out.get(s) ?? [];
    if (stmts.length) parts.push(stmts.join("\n\n"));
  }
  return { sql: parts.join("\n\n"), byHand };
}
