// What the project's catalog says about its own objects, normalized so that two snapshots (before
// and after a push, a migration, a rollback) compare fact by fact. Object names follow
// private.deploy_report's ('policy <name> on <schema.table>', 'publication <name>: table
// <schema.table>'), so a diff can be checked against what the report lists.
// Facts, for the relations (tables, partitioned tables, views, materialized views, sequences: a
// serial or identity column's under its table, as 'sequence <column>: …') and
// functions of the given schemas (or only the given tables): kind, owner, RLS and FORCE RLS,
// REPLICA IDENTITY, reloptions, a view's definition, grants (table and column), policies, triggers
// (definition and enabled state), a function's owner, grants, SECURITY DEFINER and settings; for
// every publication: owner and options, the tables and schemas it names (column list, row filter)
// and what it publishes (pg_publication_tables: the leaves of a partitioned table unless
// publish_via_partition_root), restricted to the given schemas.
import type { Sql } from "postgres";

export interface CatalogFact {
  /** e.g. 'table public.petri_observations', 'policy p on public.t', 'publication supabase_realtime: table public.t' */
  object: string;
  /** e.g. 'rls', 'grant authenticated', 'definition', 'member', 'published' */
  fact: string;
  value: string;
}

export interface CatalogScope {
  /** schemas whose relations and functions are described */
  schemas: string[];
  /** if given, only these relations ('schema.table'); functions are left out */
  tables?: string[];
  /**
   * Also every definition, for comparing two builds of the same schema: a function's full text
   * (pg_get_functiondef), comments on everything, columns (position, type, nullability, default,
   * identity, generated), constraints, indexes, partition keys and bounds, sequences' settings, the
   * schemas themselves (owner, grants, comment), default privileges, types, and the rows of the
   * given tables (their configuration, seeded by the migrations).
   */
  definitions?: { rowsOf: TableRows[] };
}

/** A table whose rows belong to the schema (its configuration), without the columns that differ per build (times). */
export interface TableRows {
  table: string;
  ignore?: string[];
}

/** A sorted, normalized description of the catalog facts listed above. */
export async function catalogSnapshot(sql: Sql, scope: CatalogScope): Promise<CatalogFact[]> {
  const tables = scope.tables ?? null;
  const rows = await sql<CatalogFact[]>`
    with rel0 as (
      select c.oid, c.relkind, c.relname, n.nspname, format('%I.%I', n.nspname, c.relname) as qname,
             case c.relkind when 'v' then 'view' when 'm' then 'materialized view' when 'S' then 'sequence' else 'table' end as kind_word
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any (${scope.schemas}::text[]) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
    ),
    owned as (   -- a serial or identity column's sequence: described with its table, as 'sequence <column>: <fact>'
      select d.objid as seq, d.refobjid as tab, a.attname
      from pg_depend d join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
      where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
        and (select relkind from pg_class where oid = d.objid) = 'S'
    ),
    rel as (
      select r.oid, r.relkind, coalesce(t.kind_word, r.kind_word) || ' ' || coalesce(t.qname, r.qname) as obj,
             coalesce('sequence ' || quote_ident(o.attname) || ': ', '') as pre, coalesce(t.qname, r.qname) as qname
      from rel0 r left join owned o on o.seq = r.oid left join rel0 t on t.oid = o.tab
      where ${tables}::text[] is null or coalesce(t.qname, r.qname) = any (${tables}::text[])
    ),
    fn as (
      select p.oid, p.proname, p.prosecdef, p.proconfig, p.proacl, p.proowner,
             format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as qname
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = any (${scope.schemas}::text[]) and ${tables}::text[] is null
    ),
    facts(object, fact, value) as (
      select r.obj, r.pre || 'kind', r.relkind::text from rel r
      union all
      select r.obj, r.pre || 'owner', pg_get_userbyid(c.relowner) from rel r join pg_class c on c.oid = r.oid
      union all
      select r.obj, r.pre || 'rls', format('enabled %s, forced %s', c.relrowsecurity, c.relforcerowsecurity)
      from rel r join pg_class c on c.oid = r.oid where r.relkind in ('r', 'p')
      union all
      select r.obj, r.pre || 'replica identity', c.relreplident::text
      from rel r join pg_class c on c.oid = r.oid where r.relkind in ('r', 'p', 'm')
      union all
      select r.obj, r.pre || 'options', array_to_string(array(select unnest(c.reloptions) order by 1), ', ')
      from rel r join pg_class c on c.oid = r.oid where c.reloptions is not null
      union all
      select r.obj, r.pre || 'definition', pg_get_viewdef(r.oid) from rel r where r.relkind in ('v', 'm')
      union all
      select r.obj, r.pre || 'grant ' || case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end,
             string_agg(a.privilege_type || case when a.is_grantable then ' with grant option' else '' end, ', ' order by a.privilege_type)
      from rel r join pg_class c on c.oid = r.oid, aclexplode(c.relacl) a
      group by r.obj, r.pre, a.grantee
      union all
      select r.obj, r.pre || format('grant %s on column %I', case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end, att.attname),
             string_agg(a.privilege_type, ', ' order by a.privilege_type)
      from rel r join pg_attribute att on att.attrelid = r.oid and att.attnum > 0 and not att.attisdropped and att.attacl is not null,
           aclexplode(att.attacl) a
      group by r.obj, r.pre, a.grantee, att.attname
      union all
      select format('policy %I on %s', p.polname, r.qname), 'definition',
             format('as %s for %s to %s using (%s) with check (%s)',
                    case when p.polpermissive then 'permissive' else 'restrictive' end, p.polcmd,
                    array_to_string(array(select case when x = 0 then 'public' else pg_get_userbyid(x) end from unnest(p.polroles) x order by 1), ', '),
                    coalesce(pg_get_expr(p.polqual, p.polrelid), '-'), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-'))
      from rel r join pg_policy p on p.polrelid = r.oid
      union all
      select format('trigger %I on %s', t.tgname, r.qname), 'definition', pg_get_triggerdef(t.oid) || ' [enabled ' || t.tgenabled::text || ']'
      from rel r join pg_trigger t on t.tgrelid = r.oid and not t.tgisinternal
      union all
      select 'function ' || f.qname, 'owner', pg_get_userbyid(f.proowner) from fn f
      union all
      select 'function ' || f.qname, 'security definer', f.prosecdef::text from fn f
      union all
      select 'function ' || f.qname, 'settings', array_to_string(array(select unnest(f.proconfig) order by 1), ', ') from fn f where f.proconfig is not null
      union all
      select 'function ' || f.qname, 'grant ' || case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end,
             string_agg(a.privilege_type, ', ' order by a.privilege_type)
      from fn f, aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
      group by f.qname, a.grantee
      union all
      select format('publication %I', p.pubname), 'options',
             format('owner %s, all tables %s, publish %s, publish_via_partition_root %s', pg_get_userbyid(p.pubowner), p.puballtables,
                    concat_ws(',', case when p.pubinsert then 'insert' end, case when p.pubupdate then 'update' end,
                              case when p.pubdelete then 'delete' end, case when p.pubtruncate then 'truncate' end), p.pubviaroot)
      from pg_publication p
      union all
      select format('publication %I: table %I.%I', p.pubname, n.nspname, c.relname), 'member',
             concat_ws(' ', '(' || (select string_agg(quote_ident(a.attname), ', ' order by a.attnum) from pg_attribute a
                                    where a.attrelid = pr.prrelid and a.attnum = any (pr.prattrs::int2[])) || ')',
                       'where ' || pg_get_expr(pr.prqual, pr.prrelid))
      from pg_publication_rel pr join pg_publication p on p.oid = pr.prpubid
      join pg_class c on c.oid = pr.prrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any (${scope.schemas}::text[])
        and (${tables}::text[] is null or format('%I.%I', n.nspname, c.relname) = any (${tables}::text[]))
      union all
      select format('publication %I: schema %I', p.pubname, n.nspname), 'member', ''
      from pg_publication_namespace pn join pg_publication p on p.oid = pn.pnpubid join pg_namespace n on n.oid = pn.pnnspid
      where n.nspname = any (${scope.schemas}::text[])
      union all
      select format('publication %I: table %I.%I', t.pubname, t.schemaname, t.tablename), 'published',
             concat_ws(' ', '(' || array_to_string(t.attnames, ', ') || ')', 'where ' || t.rowfilter)
      from pg_publication_tables t
      where t.schemaname = any (${scope.schemas}::text[])
        and (${tables}::text[] is null or format('%I.%I', t.schemaname, t.tablename) = any (${tables}::text[]))
    )
    select object, fact, coalesce(value, '') as value from facts order by object, fact`;
  const facts = rows.map((r) => ({ object: r.object, fact: r.fact, value: r.value }));
  if (scope.definitions) facts.push(...(await definitionFacts(sql, scope.schemas, scope.definitions.rowsOf)));
  return facts.sort((a, b) => (a.object === b.object ? a.fact.localeCompare(b.fact) : a.object.localeCompare(b.object)));
}

async function definitionFacts(sql: Sql, schemas: string[], rowsOf: TableRows[]): Promise<CatalogFact[]> {
  const facts = await sql<CatalogFact[]>`
    with rel as (
      select c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) as qname,
             case c.relkind when 'v' then 'view' when 'm' then 'materialized view' when 'S' then 'sequence'
                            when 'i' then 'index' when 'I' then 'index' else 'table' end || ' ' || format('%I.%I', n.nspname, c.relname) as obj
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any (${schemas}::text[]) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I', 'c')
    ),
    fn as (
      select p.oid, p.prokind, 'function ' || format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as obj
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = any (${schemas}::text[])
    )
    select f.obj as object, 'definition' as fact, case when f.prokind = 'a' then 'aggregate' else pg_get_functiondef(f.oid) end as value from fn f
    union all
    select f.obj, 'comment', d.description from fn f join pg_description d on d.objoid = f.oid and d.classoid = 'pg_proc'::regclass
    union all
    select r.obj, 'comment', d.description from rel r join pg_description d on d.objoid = r.oid and d.classoid = 'pg_class'::regclass and d.objsubid = 0
    union all
    select r.obj, format('column %I', a.attname),
           concat_ws(' ', '#' || row_number() over (partition by r.oid order by a.attnum), format_type(a.atttypid, a.atttypmod),
                     case when a.attnotnull then 'not null' end, 'default ' || pg_get_expr(ad.adbin, ad.adrelid),
                     case a.attidentity when 'a' then 'identity always' when 'd' then 'identity by default' end,
                     case a.attgenerated when 's' then 'generated' end, 'collate ' || nullif(a.attcollation, 0)::regcollation::text)
    from rel r join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
    left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
    where r.relkind in ('r', 'p', 'v', 'm', 'f', 'c')
    union all
    select r.obj, format('column %I comment', a.attname), d.description
    from rel r join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
    join pg_description d on d.objoid = r.oid and d.classoid = 'pg_class'::regclass and d.objsubid = a.attnum
    union all
    select format('constraint %I on %s', k.conname, r.qname), 'definition', pg_get_constraintdef(k.oid)
           || case when k.condeferrable then ' deferrable' else '' end || case when k.convalidated then '' else ' not valid' end
    from rel r join pg_constraint k on k.conrelid = r.oid
    union all
    select format('constraint %I on %s', k.conname, r.qname), 'comment', d.description
    from rel r join pg_constraint k on k.conrelid = r.oid join pg_description d on d.objoid = k.oid and d.classoid = 'pg_constraint'::regclass
    union all
    select r.obj, 'index definition', pg_get_indexdef(r.oid) from rel r where r.relkind in ('i', 'I')
    union all
    select r.obj, 'partition key', pg_get_partkeydef(r.oid) from rel r where r.relkind = 'p'
    union all
    select r.obj, 'partition of', format('%s %s', i.inhparent::regclass, pg_get_expr(c.relpartbound, c.oid))
    from rel r join pg_class c on c.oid = r.oid join pg_inherits i on i.inhrelid = r.oid where c.relispartition
    union all
    select r.obj, 'sequence', format('%s start %s increment %s min %s max %s cache %s cycle %s', format_type(s.seqtypid, null), s.seqstart,
                                     s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
    from rel r join pg_sequence s on s.seqrelid = r.oid
    union all
    select format('schema %I', n.nspname), 'owner', pg_get_userbyid(n.nspowner) from pg_namespace n where n.nspname = any (${schemas}::text[])
    union all
    select format('schema %I', n.nspname), 'grant ' || case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end,
           string_agg(a.privilege_type, ', ' order by a.privilege_type)
    from pg_namespace n, aclexplode(n.nspacl) a where n.nspname = any (${schemas}::text[]) group by n.nspname, a.grantee
    union all
    select format('schema %I', n.nspname), 'comment', d.description
    from pg_namespace n join pg_description d on d.objoid = n.oid and d.classoid = 'pg_namespace'::regclass where n.nspname = any (${schemas}::text[])
    union all
    select format('default privileges of %s in %s on %s', pg_get_userbyid(da.defaclrole), coalesce(n.nspname, 'every schema'), da.defaclobjtype),
           'grant ' || case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end, string_agg(a.privilege_type, ', ' order by a.privilege_type)
    from pg_default_acl da left join pg_namespace n on n.oid = da.defaclnamespace, aclexplode(da.defaclacl) a
    where n.nspname is null or n.nspname = any (${schemas}::text[])
    group by da.defaclrole, n.nspname, da.defaclobjtype, a.grantee
    union all
    select format('type %I.%I', n.nspname, t.typname), 'enum', string_agg(e.enumlabel, ', ' order by e.enumsortorder)
    from pg_type t join pg_namespace n on n.oid = t.typnamespace join pg_enum e on e.enumtypid = t.oid
    where n.nspname = any (${schemas}::text[]) group by n.nspname, t.typname
    union all
    select format('trigger %I on %s', t.tgname, r.qname), 'comment', d.description
    from rel r join pg_trigger t on t.tgrelid = r.oid join pg_description d on d.objoid = t.oid and d.classoid = 'pg_trigger'::regclass
    union all
    select format('policy %I on %s', p.polname, r.qname), 'comment', d.description
    from rel r join pg_policy p on p.polrelid = r.oid join pg_description d on d.objoid = p.oid and d.classoid = 'pg_policy'::regclass`;
  const out = facts.map((r) => ({ object: r.object, fact: r.fact, value: r.value ?? "" }));
  for (const { table, ignore = [] } of rowsOf) {
    const [row] = await sql<{ rows: string | null }[]>`
      select (select string_agg(j, E'\n' order by j)
              from (select (to_jsonb(t) - ${ignore}::text[])::text as j from ${sql.unsafe(table.split(".").map((p) => `"${p.replaceAll('"', '""')}"`).join("."))} t) x) as rows`;
    out.push({ object: `table ${table}`, fact: "rows", value: row?.rows ?? "" });
  }
  return out;
}

export interface CatalogChange {
  object: string;
  fact: string;
  /** null: the fact did not exist before */
  before: string | null;
  /** null: the fact is gone */
  after: string | null;
}

/** Every fact that was added, removed or changed between two snapshots, sorted. */
export function diffCatalog(before: CatalogFact[], after: CatalogFact[]): CatalogChange[] {
  const key = (f: CatalogFact) => `${f.object}\u0000${f.fact}`;
  const a = new Map(before.map((f) => [key(f), f]));
  const b = new Map(after.map((f) => [key(f), f]));
  const out: CatalogChange[] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(k);
    const y = b.get(k);
    if (x?.value === y?.value) continue;
    const f = (x ?? y)!;
    out.push({ object: f.object, fact: f.fact, before: x?.value ?? null, after: y?.value ?? null });
  }
  return out.sort((p, q) => (p.object === q.object ? p.fact.localeCompare(q.fact) : p.object.localeCompare(q.object)));
}

/** The changes of a diff whose object private.deploy_report does not list. */
export function unreported(changes: CatalogChange[], reportedObjects: Iterable<string>): CatalogChange[] {
  const listed = new Set(reportedObjects);
  return changes.filter((c) => !listed.has(c.object));
}
