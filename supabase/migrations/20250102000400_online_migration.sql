-- =============================================================================
-- Safety and rollback (the plan's 006): the online migration of a live legacy table into its
-- partitioned tree, phase by phase, each idempotent, each with its undo, each recorded.
--
--   idle ─prepare─> (preparing ─>) prepared ─start sync─> syncing ─backfill─> backfilling ─> backfilled
--        ─validate─> validated ─swap─> swapped ─finalize─> (finalized: _old and helpers dropped)
--   any phase ─rollback─> rolled_back (legacy live and untouched) ─finish_rollback─> idle (copy
--   emptied, helpers and state dropped)
--
-- * prepare: pre-checks must show no blocker; the legacy table's foreign keys and the plain indexes
--   that leaves need on the partitioned table; the partitions plan_tree plans for the data (sized:
--   what the rows fill; literal: every program, site and period), within each transaction's lock
--   budget (phase preparing until all exist).
-- * sync: AFTER row triggers on the legacy table apply every insert, update (also of program_id,
--   site_id, created_at) and delete to the partitioned table in the writer's own transaction.
-- * backfill: keyset batches by observation_id; each batch locks its source rows FOR SHARE (a
--   concurrent UPDATE/DELETE of them waits for the batch, then its sync trigger applies on top:
--   no zombie rows) and inserts ON CONFLICT DO NOTHING (a newer trigger-written row is never
--   overwritten). The high-water mark is committed with the batch: a kill or crash resumes there.
-- * validate: counts per program/site/month and an order-independent content checksum, each
--   computed for both tables in one statement (one snapshot); on mismatch the first differing ids.
-- * swap: ACCESS EXCLUSIVE on both tables under lock_timeout with retries and backoff, a final
--   count under the lock, renames, and everything that hangs on the table carried over. A reverse
--   sync trigger keeps <table>_old exact afterwards, so a rollback after the swap loses nothing.
--
-- A function cannot COMMIT: migrate_to_partitioned() does one bounded step per call (callers loop:
-- scripts/lib/migration-driver.ts, psql, an edge function); the DO block migration_runner()
-- returns loops with a COMMIT per step for psql and pg_cron. Nothing here runs at `db push` time.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- State
-- -----------------------------------------------------------------------------
create table if not exists partition_mgmt.migration_state (
  table_key         text primary key references partition_mgmt.managed_tables (table_key) on delete cascade,
  phase             text not null default 'prepared'
                    check (phase in ('preparing', 'prepared', 'syncing', 'backfilling', 'backfilled', 'validated', 'swapped', 'rolled_back')),
  mode              text not null default 'online' check (mode in ('online', 'offline')),
  legacy_table      regclass not null,          -- follows the rename to <table>_old
  high_water        uuid,                       -- last observation_id of the last committed batch
  program_marks     jsonb not null default '{}'::jsonb,  -- per-program high-water marks (p_program_id passes)
  rows_total        bigint,                     -- legacy rows counted at prepare
  rows_scanned      bigint not null default 0,  -- legacy rows visited by the backfill
  rows_copied       bigint not null default 0,  -- rows the backfill inserted (the rest the trigger had written)
  batches           bigint not null default 0,
  last_batch_rows   integer,
  last_batch_ms     numeric,
  backfill_ms       numeric not null default 0, -- time spent inside batches
  postpone_swap     boolean not null default true,
  carried_triggers  text[] not null default '{}',
  last_error        text,
  validated_at      timestamptz,
  swap_attempts     integer,
  swap_lock_ms      numeric,                    -- ACCESS EXCLUSIVE held from acquisition to end of the swap
  started_at        timestamptz not null default now(),
  backfill_started_at timestamptz,
  swapped_at        timestamptz,
  updated_at        timestamptz not null default now()
);
comment on table partition_mgmt.migration_state is
  'One row per managed table being migrated online: phase, backfill high-water mark and progress, swap switch and timings. Removed by finalize_migration and rollback_migration.';
comment on column partition_mgmt.migration_state.postpone_swap is
  'While true the migration stops at the swap (gh-ost''s postpone flag): set_postpone_swap(table, false) or an explicit swap_tables() lets it go on.';

create table if not exists partition_mgmt.migration_log (
  id          bigint generated always as identity primary key,
  table_key   text not null,
  at          timestamptz not null default clock_timestamp(),
  from_phase  text,
  to_phase    text not null,
  detail      jsonb not null default '{}'::jsonb
);
create index if not exists migration_log_table_idx on partition_mgmt.migration_log (table_key, at);
comment on table partition_mgmt.migration_log is 'Every phase transition of every online migration (kept after finalize and rollback).';

revoke all on partition_mgmt.migration_state, partition_mgmt.migration_log from public, anon, authenticated;
grant select on partition_mgmt.migration_state, partition_mgmt.migration_log to service_role;

-- -----------------------------------------------------------------------------
-- Helpers
-- -----------------------------------------------------------------------------

-- Writes the app made to the legacy table during the migration with a NULL program (a nullable
-- column there, a NOT NULL partition key after the swap). Filled by the sync trigger; while it
-- has rows for a table, swap_tables refuses, because the same writes would fail after the swap.
create table if not exists partition_mgmt.null_key_writes (
  id              bigint generated always as identity primary key,
  table_key       text not null references partition_mgmt.managed_tables (table_key) on delete cascade,
  observation_id  uuid not null,
  operation       text not null,
  at              timestamptz not null default clock_timestamp()
);
create index if not exists null_key_writes_table_key_at_idx on partition_mgmt.null_key_writes (table_key, at);
revoke all on partition_mgmt.null_key_writes from public, anon, authenticated;
grant select on partition_mgmt.null_key_writes to service_role;
comment on table partition_mgmt.null_key_writes is
  'Rows the app wrote without a program during a migration (derived from the site while copying). swap_tables refuses while a table has any: make the app send the program, delete them, swap again.';

create or replace function partition_mgmt.log_migration(p_table_key text, p_from text, p_to text, p_detail jsonb default '{}'::jsonb)
returns void
language sql
set search_path = ''
as $$
  insert into partition_mgmt.migration_log (table_key, from_phase, to_phase, detail) values (p_table_key, p_from, p_to, coalesce(p_detail, '{}'::jsonb));
$$;

-- Moves a migration to p_to if it is in one of p_from; raises otherwise (with what to do).
create or replace function partition_mgmt.set_migration_phase(p_table_key text, p_from text[], p_to text, p_detail jsonb default '{}'::jsonb)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_phase text;
begin
  select phase into v_phase from partition_mgmt.migration_state where table_key = p_table_key for update;
  if not found or not (v_phase = any (p_from)) then
    raise exception 'migration of "%" is in phase %, expected one of %', p_table_key, coalesce(v_phase, 'idle'), p_from
      using hint = format('See select * from partition_mgmt.monitor_migration(%L); run the phases in order.', p_table_key);
  end if;
  update partition_mgmt.migration_state set phase = p_to, updated_at = now() where table_key = p_table_key;
  perform partition_mgmt.log_migration(p_table_key, v_phase, p_to, p_detail);
end
$$;

create or replace function partition_mgmt.migration_phase(p_table_key text)
returns text
language sql stable
set search_path = ''
as $$
  -- (a table name is resolved to its key: an unknown one raises instead of answering 'idle')
  select coalesce((select phase from partition_mgmt.migration_state where table_key = partition_mgmt.resolve_table_key(p_table_key)), 'idle')
$$;

-- True while a table is between prepare and swap: maintenance must not drop or detach partitions
-- of its (still filling) partitioned copy.
create or replace function partition_mgmt.migration_in_progress(p_table_key text)
returns boolean
language sql stable
set search_path = ''
as $$
  select exists (select from partition_mgmt.migration_state where table_key = p_table_key and phase <> 'swapped')
$$;

-- A managed table in the middle of an online migration is left alone by cleanup, retention and
-- promotion: its copy's partitions are empty until the backfill reaches them.
create or replace function partition_mgmt.migration_busy(p_table_key text)
returns boolean
language sql stable
set search_path = ''
as $$ select coalesce(partition_mgmt.migration_in_progress(p_table_key), false) $$;

-- The legacy (unpartitioned) table: under the source name before the swap, <source>_old after it.
create or replace function partition_mgmt.legacy_table(p_table_key text)
returns regclass
language plpgsql stable
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v regclass;
begin
  select legacy_table into v from partition_mgmt.migration_state where table_key = p_table_key;
  if v is not null and exists (select from pg_catalog.pg_class where oid = v) then
    return v;
  end if;
  v := to_regclass(format('%I.%I', c.source_schema, c.source_table));
  if v is null or (select relkind from pg_catalog.pg_class where oid = v) <> 'r' then
    raise exception 'managed table "%" has no legacy (unpartitioned) table %.%', p_table_key, c.source_schema, c.source_table
      using hint = 'It is already partitioned (finalized), or source_schema/source_table in partition_mgmt.managed_tables is wrong.';
  end if;
  return v;
end
$$;

-- The legacy table's expression for each column of the partitioned parent, in the parent's
-- column order: the program key is derived from the site where the legacy row lacks it.
create or replace function partition_mgmt.legacy_select_list(p_table_key text, p_alias text)
returns text
language plpgsql stable
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_legacy regclass := partition_mgmt.legacy_table(p_table_key);
  v_nullable boolean;
begin
  select not attnotnull into v_nullable from pg_catalog.pg_attribute
  where attrelid = v_legacy and attname = c.program_column and not attisdropped;
  return (
    select string_agg(case when a.attname = c.program_column and v_nullable then
                        format('coalesce(%1$I.%2$I, (select s.program_id from public.sites s where s.site_id = %1$I.%3$I))',
                               p_alias, c.program_column, c.site_column)
                      else format('%I.%I', p_alias, a.attname) end, ', ' order by a.attnum)
    from pg_catalog.pg_attribute a
    where a.attrelid = partition_mgmt.parent_of(p_table_key) and a.attnum > 0 and not a.attisdropped);
end
$$;

-- Columns present on one side only (the app may have added a column to the legacy table after
-- the partitioned copy was made).
create or replace function partition_mgmt.column_drift(p_table_key text)
returns text
language sql stable
set search_path = ''
as $$
  with l as (select attname, format_type(atttypid, atttypmod) as t from pg_catalog.pg_attribute
             where attrelid = partition_mgmt.legacy_table(p_table_key) and attnum > 0 and not attisdropped),
       p as (select attname, format_type(atttypid, atttypmod) as t from pg_catalog.pg_attribute
             where attrelid = partition_mgmt.parent_of(p_table_key) and attnum > 0 and not attisdropped)
  select string_agg(format('%s %s (%s)', coalesce(l.attname, p.attname), coalesce(l.t, p.t),
                           case when p.attname is null then 'legacy only' when l.attname is null then 'partitioned only' else 'type differs' end), ', ')
  from l full join p using (attname)
  where l.attname is null or p.attname is null or l.t <> p.t
$$;

-- Views and materialized views built directly on a table (not the read API's views, which
-- install_read_api rebuilds).
create or replace function partition_mgmt.dependent_views(p_table regclass)
returns table (view_oid oid, view_name text, relkind "char")
language sql stable
set search_path = ''
as $$
  select distinct c.oid, format('%I.%I', n.nspname, c.relname), c.relkind
  from pg_catalog.pg_depend d
  join pg_catalog.pg_rewrite r on r.oid = d.objid
  join pg_catalog.pg_class c on c.oid = r.ev_class
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where d.classid = 'pg_catalog.pg_rewrite'::regclass and d.refclassid = 'pg_catalog.pg_class'::regclass
    and d.refobjid = p_table and c.oid <> p_table
$$;

-- Replaces the qualified table name p_from by p_to in a view definition (whole names only).
create or replace function partition_mgmt.repoint_sql(p_sql text, p_from text, p_to text)
returns text
language sql immutable
set search_path = ''
as $$
  select regexp_replace(p_sql, '(^|[^A-Za-z0-9_$."])' || regexp_replace(p_from, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g') || '(?![A-Za-z0-9_$])',
                        '\1' || replace(p_to, '\', '\\'), 'g')
$$;

-- -----------------------------------------------------------------------------
-- Phase 1: pre-migration checks
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.pre_migration_check(p_table text default null)
returns table (table_key text, check_name text, status text, detail text)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  m partition_mgmt.managed_tables;
  v_legacy regclass;
  v_n bigint;
  v_n2 bigint;
  v_text text;
  v_phase text;
  v_fk record;
  v_plan record;
  v_needed bigint;
  v_key text := case when p_table is null then null else partition_mgmt.resolve_table_key(p_table) end;
begin
  for m in select * from partition_mgmt.managed_tables mt where v_key is null or mt.table_key = v_key order by mt.table_key loop
    table_key := m.table_key;
    v_phase := partition_mgmt.migration_phase(m.table_key);
    if v_phase = 'swapped' then
      return query select m.table_key, 'migration state', 'ok', 'already swapped: the partitioned table is live; finalize_migration or rollback_migration';
      continue;
    end if;
    begin
      v_legacy := partition_mgmt.legacy_table(m.table_key);
    exception when others then
      return query select m.table_key, 'legacy table', 'blocker', sqlerrm;
      continue;
    end;
    return query select m.table_key, 'migration state', 'ok', format('phase %s', v_phase);

    -- primary key on the id alone: keyset batches and the reverse sync's upsert use it
    select string_agg(a.attname, ', ') into v_text
    from pg_catalog.pg_index i join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
    where i.indrelid = v_legacy and i.indisprimary;
    return query select m.table_key, 'primary key',
      case when v_text = m.id_column then 'ok' else 'blocker' end,
      case when v_text = m.id_column then format('primary key (%s)', v_text)
           else format('%s has primary key (%s); the migration needs a primary key on %s alone. Hint: add it (or a unique index) before migrating.', v_legacy, coalesce(v_text, 'none'), m.id_column) end;

    if m.parent is null then
      return query select m.table_key, 'partitioned table', 'warning', format('none yet: prepare creates it (partition_mgmt.create_partitioned_table(%L))', m.table_key);
    else
      v_text := partition_mgmt.column_drift(m.table_key);
      return query select m.table_key, 'columns', case when v_text is null then 'ok' else 'blocker' end,
        case when v_text is not null then format('columns differ between %s and %s: %s. Hint: alter table %s add column … the same way, then re-run the check.', v_legacy, m.parent, v_text, m.parent)
             else format('%s and %s have the same columns', v_legacy, m.parent) end;
    end if;
    if to_regclass(format('%I.%I', m.source_schema, m.source_table || '_old')) is not null then
      return query select m.table_key, 'swap name free', 'blocker',
        format('%I.%I already exists; the swap renames the legacy table to it. Hint: drop or rename it.', m.source_schema, m.source_table || '_old');
    end if;

    -- partition keys
    execute format('select count(*) filter (where %1$I is null or %2$I is null),
                           count(*) filter (where %1$I is not null and %2$I is not null and %3$I is null
                                            and exists (select from public.sites s where s.site_id = t.%1$I)),
                           count(*) filter (where %1$I is not null and %2$I is not null and %3$I is null
                                            and not exists (select from public.sites s where s.site_id = t.%1$I))
                    from %4$s t', m.site_column, m.time_column, m.program_column, v_legacy) into v_n, v_n2, v_text;
    return query select m.table_key, 'partition keys',
      case when v_n > 0 or v_text::bigint > 0 then 'blocker' when v_n2 > 0 then 'warning' else 'ok' end,
      case when v_n > 0 or v_text::bigint > 0 then
             format('%s row(s) with NULL %s or %s and %s row(s) with NULL %s whose site is unknown cannot be placed. Hint: fix or delete them (select * from %s where %I is null or %I is null).',
                    v_n, m.site_column, m.time_column, v_text, m.program_column, v_legacy, m.site_column, m.time_column)
           when v_n2 > 0 then format('%s row(s) with NULL %s: derived from the site while copying. After the swap %s is a partition key and NOT NULL: the app must send it on insert (until then keep the legacy table live or roll back)', v_n2, m.program_column, m.program_column)
           else 'every row has its partition keys' end;

    execute format('select count(*) from %s t left join public.pilot_programs p on p.program_id = coalesce(t.%I, (select s.program_id from public.sites s where s.site_id = t.%I))
                    where p.program_id is null or t.%I < p.start_date::timestamp at time zone ''UTC'' or t.%I >= (p.end_date + 1)::timestamp at time zone ''UTC''',
      v_legacy, m.program_column, m.site_column, m.time_column, m.time_column) into v_n;
    return query select m.table_key, 'rows outside program dates', case when v_n = 0 then 'ok' else 'warning' end,
      case when v_n = 0 then 'every row lies within its program''s start and end dates'
           else format('%s row(s) lie outside their program''s dates: prepare creates partitions for their months too', v_n) end;

    -- the tree the data asks for, against the server's lock table
    select * into v_plan from partition_mgmt.plan_lock_budget(m.table_key, v_legacy);
    return query select m.table_key, 'partition tree', 'ok',
      format('%s tree%s: %s program(s) with partitions of their own, %s site(s) with partitions of their own, %s leaves (%s relations)',
             m.tree_shape, case when m.tree_shape = 'sized' then format(' (a program or site gets partitions of its own at %s rows)', m.target_rows_per_leaf) else '' end,
             v_plan.programs, v_plan.own_sites, v_plan.leaves, v_plan.relations);
    -- the max_locks_per_transaction at which the minimum would fit
    v_needed := ceil(m.min_keyless_statements * v_plan.keyless_locks::numeric
                     / (v_plan.lock_capacity / current_setting('max_locks_per_transaction')::numeric));
    return query select m.table_key, 'lock budget',
      case when v_plan.keyless_at_once >= m.min_keyless_statements then 'ok' else 'blocker' end,
      format('a statement without the partition keys (what .eq(''%s'', …) sends) would take %s locks on the new tree (every partition, every index of every leaf); the lock table holds %s slots (max_locks_per_transaction %s), so %s such statements fit at once (minimum %s)%s',
             m.id_column, v_plan.keyless_locks, v_plan.lock_capacity, current_setting('max_locks_per_transaction'), v_plan.keyless_at_once, m.min_keyless_statements,
             case when v_plan.keyless_at_once >= m.min_keyless_statements then ''
                  else format('. Hint: fewer leaves: %s; or raise the server''s lock table: supabase --experimental postgres-config update --config max_locks_per_transaction=%s (restarts the database)',
                              case when m.tree_shape = 'literal' then format('use the sized tree (update partition_mgmt.managed_tables set tree_shape = ''sized'' where table_key = %L)', m.table_key)
                                   else format('raise target_rows_per_leaf (now %s) or pin coarser periods with set_site_granularity', m.target_rows_per_leaf) end,
                              v_needed) end);
    select count(*) filter (where l.carried), string_agg(format('%s (%s)', l.index_name, coalesce(l.reason, 'carried')), ', ')
      into v_n, v_text from partition_mgmt.legacy_indexes(m.table_key, v_legacy) l;
    return query select m.table_key, 'indexes per leaf', 'ok',
      format('%s index(es) on every leaf (every statement without the keys locks each one); of the legacy table''s plain indexes %s carried: %s',
             partition_mgmt.indexes_per_leaf(m.table_key, v_legacy), v_n, coalesce(v_text, 'none'));

    -- what hangs on the table
    -- carried at the swap as references enforced by triggers (migration 0250)
    select count(*), count(*) filter (where not f.supported), string_agg(format('%s.%s', f.child_table, f.constraint_name), ', ')
      into v_n, v_n2, v_text from partition_mgmt.referencing_foreign_keys(m.table_key, v_legacy) f;
    return query select m.table_key, 'foreign keys to the table', case when v_n2 > 0 then 'blocker' else 'ok' end,
      case when v_n = 0 then 'no foreign key references the table'
           else format('%s foreign key(s) reference %s: %s; %s of them cannot be carried (see the rows below)', v_n, v_legacy, v_text, v_n2) end;
    for v_fk in select * from partition_mgmt.referencing_foreign_keys(m.table_key, v_legacy) loop
      return query select m.table_key, format('foreign key %s', v_fk.constraint_name),
        case when not v_fk.supported then 'blocker' when not v_fk.child_indexed then 'warning' else 'ok' end,
        case when not v_fk.supported then
               format('%s on %s (%s) cannot be carried: %s', v_fk.constraint_name, v_fk.child_table, v_fk.definition, v_fk.reason)
             else format('%s on %s (%s): at the swap it becomes a reference enforced by triggers against partition_mgmt.observation_keys, with the same ON DELETE / ON UPDATE rule; rollback declares it again%s',
                         v_fk.constraint_name, v_fk.child_table, v_fk.definition,
                         case when v_fk.child_indexed then '' else format('. Hint: %s.%s has no index, so every delete of an observation scans %s: create index concurrently on %s (%I)',
                                                                        v_fk.child_table, v_fk.child_column, v_fk.child_table, v_fk.child_table, v_fk.child_column) end) end;
    end loop;
    select count(*), string_agg(c.conname, ', ') into v_n, v_text
    from pg_catalog.pg_constraint c where c.contype = 'f' and c.conrelid = v_legacy;
    return query select m.table_key, 'foreign keys from the table', 'ok',
      format('%s foreign key(s), added to the partitioned table at prepare: %s', v_n, coalesce(v_text, '-'));
    select count(*), string_agg(format('%s (%s)', d.view_name, case d.relkind when 'm' then 'materialized' else 'view' end), ', ') into v_n, v_text
    from partition_mgmt.dependent_views(v_legacy) d;
    return query select m.table_key, 'dependent views', 'ok',
      case when v_n = 0 then 'none' else format('%s, re-pointed at the swap (materialized views rebuilt just before it): %s', v_n, v_text) end;
    -- a view that reads the table with its owner's rights bypasses RLS (Supabase's advisor lint 0010)
    for v_fk in select d.view_name from partition_mgmt.dependent_views(v_legacy) d join pg_catalog.pg_class k on k.oid = d.view_oid
                where d.relkind = 'v' and not coalesce(k.reloptions @> array['security_invoker=true'], false)
                  and (has_table_privilege('anon', k.oid, 'select') or has_table_privilege('authenticated', k.oid, 'select')) loop
      return query select m.table_key, format('view %s', v_fk.view_name), 'warning',
        format('%s reads %s with its owner''s rights (no security_invoker), so RLS does not apply and every caller who may select from it sees every company''s rows (Supabase advisor lint 0010 security_definer_view). The swap keeps it so. Hint: alter view %s set (security_invoker = true)',
               v_fk.view_name, v_legacy, v_fk.view_name);
    end loop;
    select count(*), string_agg(t.tgname, ', ') into v_n, v_text from pg_catalog.pg_trigger t where t.tgrelid = v_legacy and not t.tgisinternal;
    return query select m.table_key, 'triggers', 'ok', format('%s trigger(s), carried at the swap: %s', v_n, coalesce(v_text, '-'));
    -- a policy of the project that the bundle kept although it differs from the bundle's
    for v_fk in select r.object, r.detail from private.deploy_report r
                where r.action = 'kept (differs)' and r.object like format('policy %% on %s', v_legacy) loop
      return query select m.table_key, v_fk.object, 'warning',
        format('kept as the project had it, not replaced by the bundle''s: %s. Company isolation is what your policy says; the swap carries it as it is', v_fk.detail);
    end loop;
    select count(*), string_agg(p.polname, ', ') into v_n, v_text from pg_catalog.pg_policy p where p.polrelid = v_legacy;
    return query select m.table_key, 'RLS policies',
      case when (select relrowsecurity from pg_catalog.pg_class where oid = v_legacy) then 'ok' else 'warning' end,
      format('RLS %s; %s polic(ies), carried at the swap: %s',
             case when (select relrowsecurity from pg_catalog.pg_class where oid = v_legacy) then 'enabled' else 'DISABLED (every API role with grants sees every row)' end,
             v_n, coalesce(v_text, '-'));
    select count(*), string_agg(p.pubname, ', ') into v_n, v_text
    from pg_catalog.pg_publication_rel r join pg_catalog.pg_publication p on p.oid = r.prpubid where r.prrelid = v_legacy;
    return query select m.table_key, 'publications (Realtime)',
      case when partition_mgmt.in_realtime_publication(v_legacy) then 'warning' else 'ok' end,
      case when v_n = 0 then 'in no publication'
           when partition_mgmt.in_realtime_publication(v_legacy) then
             format('member of %s, moved at the swap. Realtime: once the table is partitioned, Postgres Changes subscribers of %s receive nothing '
                    '(wal2json reports changes under the partitions'' names); the swap adds %s to supabase_realtime, one row per change '
                    '(op, record, old_record; a move to another partition is an UPDATE): subscribe to its INSERTs instead (README, "Realtime after the swap")',
                    v_text, v_legacy, partition_mgmt.realtime_feed_name(m.table_key))
           else format('member of %s, moved at the swap', v_text) end;
    select count(*) into v_n from pg_catalog.pg_attribute a where a.attrelid = v_legacy and a.attnum > 0 and not a.attisdropped and (a.attidentity <> '' or a.attgenerated <> '');
    if v_n > 0 then
      return query select m.table_key, 'identity and generated columns', 'blocker',
        format('%s identity or generated column(s): the copy would not preserve them. Hint: convert identity to a sequence default first.', v_n);
    end if;

    -- the environment
    select count(*), string_agg(format('pid %s (%s, %s)', a.pid, a.state, date_trunc('second', now() - a.xact_start)), ', ') into v_n, v_text
    from pg_catalog.pg_stat_activity a
    where a.xact_start < now() - interval '1 minute' and a.pid <> pg_catalog.pg_backend_pid() and a.datname = current_database();
    return query select m.table_key, 'long transactions', case when v_n = 0 then 'ok' else 'warning' end,
      case when v_n = 0 then 'no transaction older than a minute'
           else format('%s transaction(s) older than a minute (they delay the trigger install and the swap): %s', v_n, left(v_text, 400)) end;
    select greatest(c.reltuples, 0)::bigint, pg_catalog.pg_total_relation_size(c.oid) into v_n, v_n2 from pg_catalog.pg_class c where c.oid = v_legacy;
    return query select m.table_key, 'estimated size and time', 'ok',
      format('about %s rows, %s; the backfill runs at roughly 10,000-30,000 rows/s on small hardware (scripts/bench-migration.ts measures yours), i.e. about %s to %s',
             v_n, pg_catalog.pg_size_pretty(v_n2), make_interval(secs => v_n / 30000.0)::text, make_interval(secs => v_n / 10000.0)::text);
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Phase 2: prepare (state row, foreign keys, indexes, then the partitions plan_tree plans)
-- -----------------------------------------------------------------------------

-- Creates what the migration needs before the sync starts. The partitions are those plan_tree
-- plans for the legacy table's data (sized: only what the rows fill; literal: every program, site
-- and period), created in calls that each stay within the transaction's DDL lock budget: a call
-- that runs out says so and leaves the phase 'preparing'; the next call goes on where it stopped.
-- (A sized tree of a few million rows takes one call.)
create or replace function partition_mgmt.prepare_migration(p_table text, p_mode text default 'online')
returns text
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables;
  v_legacy regclass;
  v_parent regclass;
  v_blockers text;
  r record;
  v_def text;
  v_phase text;
  v_total bigint;
  v_before integer := (select count(*) from partition_mgmt.partition_registry);
begin
  if p_mode not in ('online', 'offline') then
    raise exception 'p_mode must be online or offline, got %', p_mode;
  end if;
  if partition_mgmt.migration_phase(v_key) = 'rolled_back' then
    perform partition_mgmt.finish_rollback(v_key);   -- the copy of the rolled-back run is emptied first
  end if;
  v_phase := partition_mgmt.migration_phase(v_key);
  if v_phase not in ('idle', 'preparing') then
    return format('%s: already %s', v_key, v_phase);
  end if;
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:migrate:' || v_key, 0));
  v_phase := partition_mgmt.migration_phase(v_key);
  if v_phase not in ('idle', 'preparing') then
    return format('%s: already %s', v_key, v_phase);
  end if;

  if v_phase = 'idle' then
    perform partition_mgmt.create_partitioned_table(v_key, false);
    c := partition_mgmt.config(v_key);
    v_legacy := partition_mgmt.legacy_table(v_key);
    v_parent := c.parent;
    select string_agg(format('%s: %s', k.check_name, k.detail), E'\n') into v_blockers
    from partition_mgmt.pre_migration_check(v_key) k where k.status = 'blocker';
    if v_blockers is not null then
      raise exception 'cannot migrate "%": pre-migration check found blockers:%', v_key, E'\n' || v_blockers
        using hint = format('Fix them, then retry; select * from partition_mgmt.pre_migration_check(%L) lists every check.', v_key);
    end if;
    if exists (select from partition_mgmt.observation_keys k where k.table_key = v_key limit 1) then
      execute format('select exists (select from %s limit 1)', v_parent) into v_def;
      if v_def::boolean then
        raise exception '% already holds rows, but no migration of "%" is recorded', v_parent, v_key
          using hint = format('It is a leftover of an interrupted run: select partition_mgmt.rollback_migration(%L) empties it.', v_key);
      end if;
    end if;
    -- the legacy table's foreign keys (validated now, while the copy is empty: instant) and plain
    -- indexes, before the partitions, which inherit them as they are created
    for r in select con.conname, pg_catalog.pg_get_constraintdef(con.oid) as def
             from pg_catalog.pg_constraint con where con.conrelid = v_legacy and con.contype = 'f' order by con.conname loop
      if not exists (select from pg_catalog.pg_constraint x where x.conrelid = v_parent and x.contype = 'f'
                     and pg_catalog.pg_get_constraintdef(x.oid) = r.def) then
        perform partition_mgmt.run_ddl(format('alter table %s add constraint %I %s', v_parent, r.conname, r.def));
      end if;
    end loop;
    for r in select * from partition_mgmt.legacy_indexes(v_key, v_legacy) l where l.carried loop
      perform partition_mgmt.run_ddl(format('create index if not exists %I on %s%s',
        left(case when position(c.source_table in r.index_name) > 0 then replace(r.index_name, c.source_table, c.partitioned_table)
                  else r.index_name || '_p' end, 63),
        v_parent, substring(r.definition from ' USING .*$')));
    end loop;
    execute format('select count(*) from %s', v_legacy) into v_total;
    insert into partition_mgmt.migration_state (table_key, phase, mode, legacy_table, rows_total)
    values (v_key, 'preparing', p_mode, v_legacy, v_total);
    perform partition_mgmt.log_migration(v_key, 'idle', 'preparing', jsonb_build_object('rows_total', v_total, 'mode', p_mode,
      'tree_shape', c.tree_shape, 'target_rows_per_leaf', c.target_rows_per_leaf));
  end if;
  c := partition_mgmt.config(v_key);
  v_legacy := partition_mgmt.legacy_table(v_key);

  -- the partitions, in order (program, its sites, their periods), each one idempotent
  for r in select * from partition_mgmt.plan_tree(v_key, v_legacy) loop
    exit when partition_mgmt.ddl_budget_exhausted();
    -- a program deleted since the plan was made is skipped; one still there stays until we commit
    perform from public.pilot_programs where program_id = r.program_id for key share;
    if found then
      case r.level
        when 'program' then perform partition_mgmt.ensure_program_partition(v_key, r.program_id);
        when 'site' then perform partition_mgmt.ensure_site_partition(v_key, r.program_id, r.site_id, r.granularity);
        else perform partition_mgmt.ensure_period_partition(v_key, r.program_id, r.site_id, r.range_start);
      end case;
    end if;
  end loop;

  if partition_mgmt.budget_spent() then
    perform partition_mgmt.log_migration(v_key, 'preparing', 'preparing', jsonb_build_object(
      'created', (select count(*) from partition_mgmt.partition_registry) - v_before, 'lock_budget', partition_mgmt.ddl_lock_budget()));
    return format('%s: preparing; %s partition(s) created in this call, the lock budget of %s slots is spent: call prepare_migration(%L) again',
      v_key, (select count(*) from partition_mgmt.partition_registry) - v_before, partition_mgmt.ddl_lock_budget(), v_key);
  end if;
  perform partition_mgmt.set_migration_phase(v_key, array['preparing'], 'prepared',
    jsonb_build_object('partitions', (select count(*) from partition_mgmt.partition_registry where table_key = v_key)));
  return format('%s: prepared (%s rows to copy into %s, %s leaves)', v_key,
    (select s.rows_total from partition_mgmt.migration_state s where s.table_key = v_key), c.parent,
    (select count(*) from partition_mgmt.partition_registry g where g.table_key = v_key and g.is_leaf));
end
$$;

-- -----------------------------------------------------------------------------
-- Phase 3: sync triggers (legacy -> partitioned before the swap, partitioned -> legacy after it)
-- Generated per table with its column names, SECURITY DEFINER (the app's role writes the legacy
-- table; the copy and the key table must be written whatever its privileges and policies).
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.install_sync_functions(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_legacy regclass := partition_mgmt.legacy_table(p_table_key);
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
  v_cols text := partition_mgmt.column_list(v_parent);
  v_new text;
  v_set_parent text;
  v_parent_name text := format('%I.%I', c.source_schema, c.partitioned_table);
  v_nullable boolean;
begin
  select string_agg(case when a.attname = c.program_column then 'v_program' else format('new.%I', a.attname) end, ', ' order by a.attnum),
         string_agg(format('%1$I = excluded.%1$I', a.attname), ', ' order by a.attnum)
           filter (where a.attname not in (c.id_column, c.program_column, c.site_column, c.time_column))
    into v_new, v_set_parent
  from pg_catalog.pg_attribute a where a.attrelid = v_parent and a.attnum > 0 and not a.attisdropped;
  select not attnotnull into v_nullable from pg_catalog.pg_attribute where attrelid = v_legacy and attname = c.program_column;

  -- legacy -> partitioned. A key change (or a delete) removes the old version first, found through
  -- the key table, so the key table never sees the id twice.
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql security definer set search_path = ''
    as $body$
    declare
      v_k record;
      v_program uuid;
    begin
      if tg_op <> 'INSERT' then
        if tg_op = 'DELETE' or (old.%3$I, old.%4$I, old.%5$I, old.%6$I) is distinct from (new.%3$I, new.%4$I, new.%5$I, new.%6$I) then
          select k.program_id, k.site_id, k.created_at into v_k from partition_mgmt.observation_keys k
          where k.table_key = %7$L and k.observation_id = old.%3$I;
          if found then
            delete from %2$s t where t.%3$I = old.%3$I and t.%4$I = v_k.program_id and t.%5$I = v_k.site_id and t.%6$I = v_k.created_at;
          end if;
        end if;
        if tg_op = 'DELETE' then
          return null;
        end if;
      end if;
      v_program := %8$s;%14$s
      if v_program is null then
        raise exception 'cannot place %% %% in %%: %% is NULL and site %% has no program', %9$L, new.%3$I, %2$L, %10$L, new.%5$I
          using errcode = 'not_null_violation', hint = 'Set the program of the row (or of its site).';
      end if;
      insert into %2$s (%11$s) values (%12$s)
      on conflict (%3$I, %4$I, %5$I, %6$I) do update set %13$s;
      return null;
    end
    $body$
    $f$, p_table_key || '_sync_to_partitioned', v_parent_name, c.id_column, c.program_column, c.site_column, c.time_column,
      p_table_key,
      case when v_nullable then format('coalesce(new.%I, (select s.program_id from public.sites s where s.site_id = new.%I))', c.program_column, c.site_column)
           else format('new.%I', c.program_column) end,
      c.source_table, c.program_column, v_cols, v_new, coalesce(v_set_parent, format('%1$I = excluded.%1$I', c.id_column)),
      -- the app still writes rows without the program: after the swap those writes would fail,
      -- so swap_tables refuses while any is recorded
      case when v_nullable then format('
      if new.%1$I is null and (tg_op = ''INSERT'' or old.%1$I is not null) then
        insert into partition_mgmt.null_key_writes (table_key, observation_id, operation) values (%2$L, new.%3$I, tg_op);
      end if;', c.program_column, p_table_key, c.id_column) else '' end);

  execute format('revoke all on function partition_mgmt.%I() from public', p_table_key || '_sync_to_partitioned');
  perform partition_mgmt.set_reverse_sync(p_table_key, false);
end
$install$;

-- The reverse sync, partitioned (live after the swap) -> legacy (<table>_old): a row moved to
-- another partition arrives as DELETE + INSERT, an id change as UPDATE. Its trigger is put on the
-- copy when the sync starts (cloning a trigger onto every leaf takes time that the swap's lock
-- must not); until the swap the function does nothing, and the swap only replaces its body (one
-- catalog row). Deactivated again by the swap back.
create or replace function partition_mgmt.set_reverse_sync(p_table_key text, p_active boolean)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
  v_legacy_name text := format('%I.%I', c.source_schema, c.source_table || '_old');
begin
  if not p_active then
    execute format($f$
      create or replace function partition_mgmt.%1$I() returns trigger
      language plpgsql security definer set search_path = ''
      as $body$
      begin
        return null;   -- dormant: the partitioned table is not the live table (see set_reverse_sync)
      end
      $body$$f$, p_table_key || '_sync_to_legacy');
  else
    execute format($f$
      create or replace function partition_mgmt.%1$I() returns trigger
      language plpgsql security definer set search_path = ''
      as $body$
      begin
        if tg_op = 'DELETE' or old.%3$I is distinct from new.%3$I then
          delete from %2$s t where t.%3$I = old.%3$I;
          if tg_op = 'DELETE' then
            return null;
          end if;
        end if;
        insert into %2$s (%4$s) values (%5$s)
        on conflict (%3$I) do update set %6$s;
        return null;
      end
      $body$
      $f$, p_table_key || '_sync_to_legacy', v_legacy_name, c.id_column, partition_mgmt.column_list(v_parent),
        (select string_agg(format('new.%I', a.attname), ', ' order by a.attnum) from pg_catalog.pg_attribute a
         where a.attrelid = v_parent and a.attnum > 0 and not a.attisdropped),
        (select string_agg(format('%1$I = excluded.%1$I', a.attname), ', ' order by a.attnum) from pg_catalog.pg_attribute a
         where a.attrelid = v_parent and a.attnum > 0 and not a.attisdropped and a.attname <> c.id_column));
  end if;
  execute format('revoke all on function partition_mgmt.%I() from public', p_table_key || '_sync_to_legacy');
end
$install$;

-- What the swap needs on every leaf of the copy is put there before the copy is filled, dormant,
-- so that the swap's ACCESS EXCLUSIVE lock does not last as long as cloning triggers onto every
-- leaf takes: the reverse sync (its function does nothing until the swap) and the ON DELETE / ON
-- UPDATE actions of the foreign keys that reference the table (they act only once the copy is the
-- live table).
create or replace function partition_mgmt.install_copy_triggers(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
begin
  if not exists (select from pg_catalog.pg_trigger where tgrelid = v_parent and tgname = 'partition_mgmt_sync_to_legacy') then
    perform partition_mgmt.run_ddl(format('create trigger partition_mgmt_sync_to_legacy after insert or update or delete on %s for each row execute function partition_mgmt.%I()',
      v_parent, p_table_key || '_sync_to_legacy'));
  end if;
  perform partition_mgmt.preinstall_reference_actions(p_table_key, partition_mgmt.legacy_table(p_table_key), v_parent);
  perform partition_mgmt.carry_replica_identity(p_table_key);
end
$$;

create or replace function partition_mgmt.start_sync(p_table text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  v_legacy regclass;
begin
  if partition_mgmt.migration_phase(v_key) <> 'prepared' then
    return format('%s: %s', v_key, partition_mgmt.migration_phase(v_key));
  end if;
  v_legacy := partition_mgmt.legacy_table(v_key);
  perform partition_mgmt.install_sync_functions(v_key);
  perform partition_mgmt.install_copy_triggers(v_key);
  -- CREATE TRIGGER waits for the writers in flight (SHARE ROW EXCLUSIVE): every row is then either
  -- committed before the trigger (the backfill copies it) or written through it.
  perform partition_mgmt.run_ddl(format('create trigger partition_mgmt_sync_to_partitioned after insert or update or delete on %s for each row execute function partition_mgmt.%I()',
    v_legacy, v_key || '_sync_to_partitioned'));
  perform partition_mgmt.set_migration_phase(v_key, array['prepared'], 'syncing');
  return format('%s: syncing (trigger on %s)', v_key, v_legacy);
end
$$;

-- -----------------------------------------------------------------------------
-- Phase 4: backfill in keyset batches
-- -----------------------------------------------------------------------------

-- One batch of one table in the caller's transaction. Returns the rows visited (0 = done).
create or replace function partition_mgmt.backfill_batch(p_table_key text, p_batch_size integer, p_program_id uuid default null,
  out rows_scanned bigint, out rows_copied bigint, out high_water uuid)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_state partition_mgmt.migration_state;
  v_legacy regclass;
  v_from uuid;
  v_filter text := 'true';
  v_t0 timestamptz := clock_timestamp();
  v_ms numeric;
begin
  -- the state row lock serialises concurrent backfillers of the same table
  select * into v_state from partition_mgmt.migration_state s where s.table_key = p_table_key for update;
  v_legacy := v_state.legacy_table;
  if p_program_id is not null then
    v_from := (v_state.program_marks ->> p_program_id::text)::uuid;
    v_filter := format('(l.%1$I = %3$L or (l.%1$I is null and l.%2$I in (select s.site_id from public.sites s where s.program_id = %3$L)))',
                       c.program_column, c.site_column, p_program_id);
  else
    v_from := v_state.high_water;
  end if;
  -- The upper bound is the n-th id after the mark; every row in (mark, bound] is then copied,
  -- including rows a concurrent delete removed from the first scan's view. Rows inserted later
  -- anywhere in the key space came through the sync trigger.
  execute format($q$
    with bounds as (
      select (select x.%1$I from (select l.%1$I from %2$s l where ($1 is null or l.%1$I > $1) and %3$s order by l.%1$I limit $2) x
              order by x.%1$I desc limit 1) as upper
    ), src as (
      select l.* from %2$s l, bounds b where ($1 is null or l.%1$I > $1) and l.%1$I <= b.upper and %3$s
      for share of l
    ), ins as (
      -- in leaf order: the AFTER row events of one statement are fired in the order of the rows,
      -- and each switch to another leaf costs a search through every leaf the statement opened
      -- (ExecGetTriggerResultRel), so random ids over thousands of leaves cost O(rows x leaves)
      insert into %4$s (%5$s) select %6$s from src l order by l.%7$I, l.%8$I on conflict do nothing returning 1
    )
    select (select count(*) from src), (select count(*) from ins), (select upper from bounds)$q$,
    c.id_column, v_legacy, v_filter, c.parent, partition_mgmt.column_list(c.parent), partition_mgmt.legacy_select_list(p_table_key, 'l'),
    c.site_column, c.time_column)
    into rows_scanned, rows_copied, high_water using v_from, p_batch_size;
  v_ms := extract(epoch from clock_timestamp() - v_t0) * 1000;
  if high_water is null then
    rows_scanned := 0;
    high_water := v_from;
    if p_program_id is null and v_state.phase in ('syncing', 'backfilling') then
      update partition_mgmt.migration_state s set phase = 'backfilled', updated_at = now(), last_error = null where s.table_key = p_table_key;
      perform partition_mgmt.log_migration(p_table_key, v_state.phase, 'backfilled',
        jsonb_build_object('rows_scanned', v_state.rows_scanned, 'rows_copied', v_state.rows_copied, 'batches', v_state.batches));
    end if;
    return;
  end if;
  update partition_mgmt.migration_state s set
    high_water = case when p_program_id is null then backfill_batch.high_water else s.high_water end,
    program_marks = case when p_program_id is null then s.program_marks
                         else s.program_marks || jsonb_build_object(p_program_id::text, backfill_batch.high_water) end,
    rows_scanned = s.rows_scanned + backfill_batch.rows_scanned,
    rows_copied = s.rows_copied + backfill_batch.rows_copied,
    batches = s.batches + 1,
    last_batch_rows = backfill_batch.rows_scanned,
    last_batch_ms = v_ms,
    backfill_ms = s.backfill_ms + v_ms,
    backfill_started_at = coalesce(s.backfill_started_at, v_t0),
    phase = case when s.phase = 'syncing' then 'backfilling' else s.phase end,
    last_error = null,
    updated_at = now()
  where s.table_key = p_table_key;
  if v_state.phase = 'syncing' then
    perform partition_mgmt.log_migration(p_table_key, 'syncing', 'backfilling', '{}'::jsonb);
  end if;
end
$$;

-- The plan's entry point: up to p_max_batches batches (and at most p_max_seconds) of every table
-- being migrated, or of p_table only, in the caller's transaction; returns the progress. Callers
-- loop, committing between calls, until done. An error is recorded in the state (last_error) and
-- returned, not raised, so a loop can report it.
create or replace function partition_mgmt.migrate_to_partitioned(
  p_batch_size integer default 10000,
  p_program_id uuid default null,
  p_table text default null,
  p_max_batches integer default 1,
  p_max_seconds numeric default null)
returns table (table_key text, phase text, batches integer, rows_scanned bigint, rows_copied bigint, high_water uuid, done boolean, error text)
language plpgsql
set search_path = ''
as $$
declare
  v_key text := case when p_table is null then null else partition_mgmt.resolve_table_key(p_table) end;
  v_t0 timestamptz := clock_timestamp();
  m record;
  b record;
begin
  if p_batch_size is null or p_batch_size < 1 or p_batch_size > 1000000 then
    raise exception 'p_batch_size must be between 1 and 1000000, got %', coalesce(p_batch_size::text, 'null')
      using hint = 'Batches of 1,000-10,000 rows keep each transaction short.';
  end if;
  for m in select s.table_key from partition_mgmt.migration_state s
           where (v_key is null or s.table_key = v_key)
           order by s.table_key loop
    table_key := m.table_key;
    batches := 0; rows_scanned := 0; rows_copied := 0; done := false; error := null;
    if partition_mgmt.migration_phase(m.table_key) not in ('syncing', 'backfilling') and p_program_id is null then
      -- nothing to copy: prepared (sync not started) or already past the backfill
      continue when v_key is null;
      phase := partition_mgmt.migration_phase(m.table_key);
      done := phase not in ('preparing', 'prepared');
      error := case when phase = 'prepared' then format('sync is not started: select partition_mgmt.start_sync(%L)', m.table_key)
                    when phase = 'preparing' then format('prepare is not finished: select partition_mgmt.prepare_migration(%L)', m.table_key) end;
      high_water := (select s.high_water from partition_mgmt.migration_state s where s.table_key = m.table_key);
      return next;
      continue;
    end if;
    begin
      loop
        select * into b from partition_mgmt.backfill_batch(m.table_key, p_batch_size, p_program_id);
        high_water := b.high_water;
        exit when b.rows_scanned = 0;
        batches := batches + 1;
        rows_scanned := rows_scanned + b.rows_scanned;
        rows_copied := rows_copied + b.rows_copied;
        exit when batches >= coalesce(p_max_batches, 1)
               or (p_max_seconds is not null and clock_timestamp() - v_t0 >= make_interval(secs => p_max_seconds));
      end loop;
      done := b.rows_scanned = 0;
    exception when others then
      error := format('%s (SQLSTATE %s)', sqlerrm, sqlstate);
      update partition_mgmt.migration_state s set last_error = error, updated_at = now() where s.table_key = m.table_key;
      raise warning 'backfill of % failed: %', m.table_key, error;
    end;
    phase := partition_mgmt.migration_phase(m.table_key);
    return next;
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Phase 5: monitoring
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.monitor_migration(p_table text default null)
returns table (table_key text, phase text, rows_copied bigint, rows_scanned bigint, rows_total bigint, percent numeric,
               rows_per_second numeric, eta interval, pending_in_defaults bigint, batches bigint, last_batch_ms numeric,
               postpone_swap boolean, swap_lock_ms numeric, last_error text, started_at timestamptz, updated_at timestamptz)
language plpgsql stable
set search_path = ''
as $$
declare
  v_key text := case when p_table is null then null else partition_mgmt.resolve_table_key(p_table) end;
  m partition_mgmt.managed_tables;
  s partition_mgmt.migration_state;
  d record;
  v_n bigint;
begin
  for m in select * from partition_mgmt.managed_tables mt where v_key is null or mt.table_key = v_key order by mt.table_key loop
    select * into s from partition_mgmt.migration_state x where x.table_key = m.table_key;
    table_key := m.table_key;
    phase := coalesce(s.phase, 'idle');
    rows_copied := coalesce(s.rows_copied, 0);
    rows_scanned := coalesce(s.rows_scanned, 0);
    rows_total := s.rows_total;
    percent := case when s.phase in ('backfilled', 'validated', 'swapped') then 100
                    when coalesce(s.rows_total, 0) = 0 then case when s.phase is null then 0 else 0 end
                    else least(100, round(100.0 * s.rows_scanned / s.rows_total, 1)) end;
    rows_per_second := case when coalesce(s.backfill_ms, 0) > 0 then round(s.rows_scanned / (s.backfill_ms / 1000.0)) end;
    eta := case when s.phase in ('syncing', 'backfilling') and s.backfill_started_at is not null and s.rows_scanned > 0 and s.rows_total > s.rows_scanned
                then (now() - s.backfill_started_at) * ((s.rows_total - s.rows_scanned)::numeric / s.rows_scanned)
                when s.phase in ('backfilled', 'validated', 'swapped') then interval '0' end;
    pending_in_defaults := 0;
    if m.parent is not null then
      for d in select r.partition_schema, r.partition_name from partition_mgmt.partition_registry r
               where r.table_key = m.table_key and r.is_default and partition_mgmt.is_waiting_room(m.tree_shape, r.level) loop
        execute format('select count(*) from %I.%I', d.partition_schema, d.partition_name) into v_n;
        pending_in_defaults := pending_in_defaults + v_n;
      end loop;
    end if;
    batches := coalesce(s.batches, 0);
    last_batch_ms := s.last_batch_ms;
    postpone_swap := s.postpone_swap;
    swap_lock_ms := s.swap_lock_ms;
    last_error := s.last_error;
    started_at := s.started_at;
    updated_at := s.updated_at;
    return next;
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Phase 6: validation
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.post_migration_validation(p_table text default null)
returns table (table_key text, check_name text, status text, legacy_value text, partitioned_value text, detail text)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_key text := case when p_table is null then null else partition_mgmt.resolve_table_key(p_table) end;
  m record;
  c partition_mgmt.managed_tables;
  v_legacy regclass;
  v_sel text;
  v_cols text;
  v_groups_sql text;
  v_a bigint; v_b bigint; v_bad bigint; v_detail text;
  v_ha numeric; v_hb numeric;
  v_ok boolean;
  v_diff text;
begin
  for m in select s.table_key, s.phase from partition_mgmt.migration_state s where v_key is null or s.table_key = v_key order by s.table_key loop
    c := partition_mgmt.config(m.table_key);
    v_legacy := partition_mgmt.legacy_table(m.table_key);
    v_sel := partition_mgmt.legacy_select_list(m.table_key, 'l');
    v_cols := partition_mgmt.column_list(c.parent, 'p');
    table_key := m.table_key;
    v_ok := true;

    -- every check reads both tables in one statement: one snapshot, so concurrent writes (applied
    -- to both tables in the writer's transaction) cannot make them look different
    execute format('select (select count(*) from %s), (select count(*) from %s)', v_legacy, c.parent) into v_a, v_b;
    v_ok := v_ok and v_a = v_b;
    return query select m.table_key, 'row count', case when v_a = v_b then 'ok' else 'mismatch' end, v_a::text, v_b::text,
      case when v_a = v_b then 'equal' else format('%s more row(s) in %s', abs(v_a - v_b), case when v_a > v_b then v_legacy::text else c.parent::text end) end;

    v_groups_sql := format($q$
      with l as (select x.program_id, x.site_id, x.month, count(*) as n from (
                   select %1$s as program_id, l.%2$I as site_id, date_trunc('month', l.%3$I at time zone 'UTC') as month from %4$s l) x
                 group by 1, 2, 3),
           p as (select p.%5$I as program_id, p.%2$I as site_id, date_trunc('month', p.%3$I at time zone 'UTC') as month, count(*) as n
                 from %6$s p group by 1, 2, 3)
      select count(*) filter (where l.n is distinct from p.n), count(*),
             string_agg(format('program %%s site %%s %%s: %%s vs %%s', coalesce(l.program_id, p.program_id), coalesce(l.site_id, p.site_id),
                               to_char(coalesce(l.month, p.month), 'YYYY-MM'), coalesce(l.n, 0), coalesce(p.n, 0)), '; ')
               filter (where l.n is distinct from p.n)
      from l full join p using (program_id, site_id, month)$q$,
      format('coalesce(l.%1$I, (select s.program_id from public.sites s where s.site_id = l.%2$I))', c.program_column, c.site_column),
      c.site_column, c.time_column, v_legacy, c.program_column, c.parent);
    execute v_groups_sql into v_bad, v_a, v_detail;
    v_ok := v_ok and v_bad = 0;
    return query select m.table_key, 'counts per program/site/month', case when v_bad = 0 then 'ok' else 'mismatch' end,
      v_a::text || ' groups', null::text,
      case when v_bad = 0 then 'every group has the same count' else format('%s group(s) differ, first: %s', v_bad, left(v_detail, 600)) end;

    -- order-independent checksum: the sum of a 60-bit hash of every row's text
    execute format($q$select (select coalesce(sum(('x' || left(md5(row(%1$s)::text), 15))::bit(60)::bigint), 0) from %2$s l),
                             (select coalesce(sum(('x' || left(md5(row(%3$s)::text), 15))::bit(60)::bigint), 0) from %4$s p)$q$,
                   v_sel, v_legacy, v_cols, c.parent) into v_ha, v_hb;
    v_ok := v_ok and v_ha = v_hb;
    return query select m.table_key, 'content checksum', case when v_ha = v_hb then 'ok' else 'mismatch' end, v_ha::text, v_hb::text,
      case when v_ha = v_hb then 'equal' else 'contents differ' end;

    if not v_ok then
      execute format($q$select string_agg(x.side || ' ' || x.id, ', ') from (
                         (select 'only in legacy:' as side, d.%1$I::text as id from (select %2$s from %3$s l except select %4$s from %5$s p) d order by 2 limit 10)
                         union all
                         (select 'only in partitioned:', d.%1$I::text from (select %4$s from %5$s p except select %2$s from %3$s l) d order by 2 limit 10)) x$q$,
                     c.id_column, v_sel, v_legacy, v_cols, c.parent) into v_diff;
      return query select m.table_key, 'first differing rows', 'mismatch', null::text, null::text, coalesce(v_diff, 'none found (rows changed while validating?)');
      update partition_mgmt.migration_state s set last_error = 'validation mismatch: ' || coalesce(left(v_diff, 400), ''), updated_at = now()
      where s.table_key = m.table_key;
    elsif m.phase in ('backfilled', 'validated') then
      update partition_mgmt.migration_state s set phase = 'validated', validated_at = now(), last_error = null, updated_at = now()
      where s.table_key = m.table_key;
      if m.phase = 'backfilled' then
        perform partition_mgmt.log_migration(m.table_key, 'backfilled', 'validated', jsonb_build_object('rows', v_b, 'checksum', v_hb));
      end if;
    end if;
  end loop;
end
$$;

-- Exact both-way EXCEPT of the legacy table and the partitioned table (the legacy side with its
-- derived program key), in one snapshot. For tests and for operators who can afford a full
-- comparison; post_migration_validation is the cheaper check.
create or replace function partition_mgmt.compare_tables(p_table text,
  out only_in_legacy bigint, out only_in_partitioned bigint, out sample text)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_legacy regclass := partition_mgmt.legacy_table(v_key);
  v_sel text := partition_mgmt.legacy_select_list(v_key, 'l');
  v_cols text := partition_mgmt.column_list(c.parent, 'p');
begin
  execute format($q$
    with a as (select %2$s from %3$s l except all select %4$s from %5$s p),
         b as (select %4$s from %5$s p except all select %2$s from %3$s l)
    select (select count(*) from a), (select count(*) from b),
           (select string_agg(x, ', ') from (select 'legacy ' || a.%1$I from a limit 5) s(x)) || ' ' ||
           coalesce((select string_agg(x, ', ') from (select 'partitioned ' || b.%1$I from b limit 5) s(x)), '')$q$,
    c.id_column, v_sel, v_legacy, v_cols, c.parent) into only_in_legacy, only_in_partitioned, sample;
end
$$;
revoke all on function partition_mgmt.compare_tables(text) from public, anon, authenticated;
grant execute on function partition_mgmt.compare_tables(text) to service_role;

-- -----------------------------------------------------------------------------
-- Phase 7: swap (and the swap back, for rollback)
-- -----------------------------------------------------------------------------

-- -----------------------------------------------------------------------------
-- Realtime after the swap
--
-- Supabase Realtime's Postgres Changes decode the WAL with wal2json and match subscribers by the
-- table name of each change. wal2json reports a change of a partitioned table under the name of
-- the leaf that holds the row (and, filtered to the publication's tables with
-- publish_via_partition_root, not at all), so once the partitioned table is live a subscriber of
-- public.petri_observations receives nothing. A partitioned table with a Realtime audience gets a
-- change feed instead: public.<table>_changes, a plain table in the supabase_realtime publication,
-- one row per changed row (op, record, old_record), written by statement-level triggers on the
-- partitioned table, whose transition tables see a row moved to another partition as the UPDATE it
-- is (row-level triggers on the leaves see a DELETE and an INSERT). It has RLS by company, so
-- Realtime delivers each change only to subscribers who may read it. Maintenance keeps an hour.
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.in_realtime_publication(p_table regclass)
returns boolean
language sql stable
set search_path = ''
as $$
  select exists (select from pg_catalog.pg_publication_rel pr join pg_catalog.pg_publication p on p.oid = pr.prpubid
                 where p.pubname = 'supabase_realtime' and pr.prrelid = p_table)
$$;

create or replace function partition_mgmt.realtime_feed_name(p_table_key text)
returns text
language sql stable
set search_path = ''
as $$
  select format('%I.%I', m.source_schema, m.source_table || '_changes') from partition_mgmt.managed_tables m where m.table_key = p_table_key
$$;

-- The feed table, its RLS, grants and publication membership, and the trigger function (one per
-- managed table). Idempotent; runs before the swap's lock.
create or replace function partition_mgmt.install_realtime_feed(p_table_key text)
returns text
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_feed text := partition_mgmt.realtime_feed_name(p_table_key);
  v_company text;
begin
  -- the company of a row: its own company_id column where the table has one, else its program's
  v_company := case when exists (select from pg_catalog.pg_attribute a where a.attrelid = c.parent and a.attname = 'company_id' and not a.attisdropped)
                    then 'x.company_id'
                    else format('(select p.company_id from public.pilot_programs p where p.program_id = x.%I)', c.program_column) end;
  execute format('create table if not exists %s (
    change_id      bigint generated always as identity primary key,
    changed_at     timestamptz not null default now(),
    op             text not null check (op in (''INSERT'', ''UPDATE'', ''DELETE'')),
    %I             uuid not null,
    company_id     uuid,
    record         jsonb,
    old_record     jsonb)', v_feed, c.id_column);
  execute format('comment on table %s is %L', v_feed,
    format('Realtime change feed of %I.%I (partitioned: wal2json reports its changes under the partitions'' names). '
           'Subscribe to its INSERTs: op, record (the row after), old_record (before). Kept an hour.', c.source_schema, c.source_table));
  execute format('create index if not exists %I on %s (changed_at)', c.source_table || '_changes_changed_at_idx', v_feed);
  execute format('alter table %s enable row level security', v_feed);
  if not exists (select from pg_catalog.pg_policy where polrelid = v_feed::regclass and polname = 'company_isolation_changes') then
    execute format('create policy company_isolation_changes on %s for select to authenticated using (company_id = any ((select private.user_company_ids())::uuid[]))', v_feed);
  end if;
  execute format('revoke all on table %s from public, anon, authenticated', v_feed);
  execute format('grant select on table %s to authenticated, service_role', v_feed);
  if exists (select from pg_catalog.pg_publication where pubname = 'supabase_realtime') and not partition_mgmt.in_realtime_publication(v_feed::regclass) then
    execute format('alter publication supabase_realtime add table %s', v_feed);
  end if;
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql security definer set search_path = ''
    as $body$
    begin
      if tg_op = 'INSERT' then
        insert into %2$s (op, %3$I, company_id, record) select 'INSERT', x.%3$I, %4$s, to_jsonb(x) from new_rows x;
      elsif tg_op = 'UPDATE' then
        insert into %2$s (op, %3$I, company_id, record, old_record)
        select 'UPDATE', x.%3$I, %4$s, to_jsonb(x), to_jsonb(o) from new_rows x join old_rows o using (%3$I);
      else
        insert into %2$s (op, %3$I, company_id, old_record) select 'DELETE', x.%3$I, %4$s, to_jsonb(x) from old_rows x;
      end if;
      return null;
    end
    $body$$f$, p_table_key || '_realtime_feed', v_feed, c.id_column, v_company);
  execute format('revoke all on function partition_mgmt.%I() from public', p_table_key || '_realtime_feed');
  return v_feed;
end
$install$;

-- The feed's statement-level triggers on the table (not cloned onto the leaves: one catalog row
-- each, fit for the swap's lock), on or off.
create or replace function partition_mgmt.set_realtime_feed_triggers(p_table_key text, p_table regclass, p_on boolean)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_op text;
begin
  foreach v_op in array array['insert', 'update', 'delete'] loop
    execute format('drop trigger if exists %I on %s', 'partition_mgmt_realtime_' || v_op, p_table);
    if p_on then
      execute format('create trigger %I after %s on %s referencing %s for each statement execute function partition_mgmt.%I()',
        'partition_mgmt_realtime_' || v_op, v_op, p_table,
        case v_op when 'insert' then 'new table as new_rows' when 'update' then 'old table as old_rows new table as new_rows' else 'old table as old_rows' end,
        p_table_key || '_realtime_feed');
    end if;
  end loop;
end
$$;

-- The legacy table's REPLICA IDENTITY (Realtime needs FULL to send old records) on the
-- partitioned parent and every leaf (partition_mgmt.apply_replica_identity), before the copy is
-- filled.
create or replace function partition_mgmt.carry_replica_identity(p_table_key text)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_ident "char" := (select relreplident from pg_catalog.pg_class where oid = partition_mgmt.legacy_table(p_table_key));
begin
  if v_ident in ('d', 'f', 'n') and v_ident <> (select relreplident from pg_catalog.pg_class where oid = c.parent) then
    execute format('alter table %s replica identity %s', c.parent, case v_ident when 'f' then 'full' when 'n' then 'nothing' else 'default' end);
  end if;
  return partition_mgmt.apply_replica_identity(p_table_key);
end
$$;

-- Materialized views on p_from are rebuilt on p_to under a temporary name BEFORE the lock
-- (populating is the slow part), then only renamed under it. Returns the plan for the lock.
create or replace function partition_mgmt.prebuild_dependents(p_from regclass, p_to regclass, p_live_name text)
returns jsonb
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  d record;
  v_def text;
  v_out jsonb := '[]'::jsonb;
  v_shadow text;
  v_idx record;
  v_acl record;
begin
  for d in select * from partition_mgmt.dependent_views(p_from) x
           where x.view_name not in (select format('%I.%I', m.source_schema, m.source_table || '_by_submission') from partition_mgmt.managed_tables m)
           order by x.view_name loop
    if d.relkind = 'v' then
      -- read the definition while p_from still has the live name: after the renames the same
      -- text resolves to p_to
      v_out := v_out || jsonb_build_object('kind', 'view', 'name', d.view_name, 'def', pg_catalog.pg_get_viewdef(d.view_oid),
        'options', (select array_to_string(reloptions, ', ') from pg_catalog.pg_class where oid = d.view_oid));
    elsif d.relkind = 'm' then
      v_shadow := (select format('%I.%I', n.nspname, left(c.relname, 55) || '__mig') from pg_catalog.pg_class c
                   join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = d.view_oid);
      if to_regclass(v_shadow) is not null then
        execute format('drop materialized view %s', v_shadow);
      end if;
      v_def := partition_mgmt.repoint_sql(pg_catalog.pg_get_viewdef(d.view_oid), p_live_name, p_to::text);
      execute format('create materialized view %s as %s with data', v_shadow, rtrim(v_def, '; '));
      for v_idx in select c.relname, pg_catalog.pg_get_indexdef(i.indexrelid) as def from pg_catalog.pg_index i
                   join pg_catalog.pg_class c on c.oid = i.indexrelid where i.indrelid = d.view_oid loop
        execute replace(replace(v_idx.def, format(' ON %s ', d.view_name), format(' ON %s ', v_shadow)),
                        format('INDEX %s ', quote_ident(v_idx.relname)), format('INDEX %s ', quote_ident(left(v_idx.relname, 55) || '__mig')));
      end loop;
      for v_acl in select case when a.grantee = 0 then 'public' else quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) end as grantee,
                          string_agg(a.privilege_type, ', ') as privs
                   from pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
                   where c.oid = d.view_oid and a.grantee <> c.relowner group by a.grantee loop
        execute format('grant %s on %s to %s', v_acl.privs, v_shadow, v_acl.grantee);
      end loop;
      execute format('comment on materialized view %s is %L', v_shadow, pg_catalog.obj_description(d.view_oid, 'pg_class'));
      v_out := v_out || jsonb_build_object('kind', 'matview', 'name', d.view_name, 'shadow', v_shadow,
        'indexes', (select coalesce(jsonb_agg(c.relname), '[]'::jsonb) from pg_catalog.pg_index i join pg_catalog.pg_class c on c.oid = i.indexrelid where i.indrelid = d.view_oid));
    end if;
  end loop;
  return v_out;
end
$$;

-- Under the lock: everything that hangs on the table moves from p_from (just renamed away) to
-- p_to (which now has the live name). p_plan comes from prebuild_dependents.
create or replace function partition_mgmt.carry_dependents(p_table_key text, p_from regclass, p_to regclass, p_plan jsonb, p_copy_triggers boolean)
returns text[]
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v jsonb;
  v_schema text;
  v_carried text[] := '{}'::text[];
  v_def text;
begin
  -- row level security and policies
  if (select relrowsecurity from pg_catalog.pg_class where oid = p_from) then
    execute format('alter table %s enable row level security', p_to);
  end if;
  if (select relforcerowsecurity from pg_catalog.pg_class where oid = p_from) then
    execute format('alter table %s force row level security', p_to);
  end if;
  for r in select polname from pg_catalog.pg_policy where polrelid = p_to loop
    execute format('drop policy %I on %s', r.polname, p_to);
  end loop;
  for r in select p.polname, case when p.polpermissive then 'permissive' else 'restrictive' end as kind,
                  case p.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update' when 'd' then 'delete' else 'all' end as cmd,
                  (select string_agg(case when x = 0 then 'public' else quote_ident(pg_catalog.pg_get_userbyid(x)) end, ', ') from unnest(p.polroles) x) as roles,
                  pg_catalog.pg_get_expr(p.polqual, p.polrelid) as qual, pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as chk,
                  pg_catalog.obj_description(p.oid, 'pg_policy') as cmt
           from pg_catalog.pg_policy p where p.polrelid = p_from loop
    execute format('create policy %I on %s as %s for %s to %s%s%s', r.polname, p_to, r.kind, r.cmd, r.roles,
      case when r.qual is not null then format(' using (%s)', r.qual) else '' end,
      case when r.chk is not null then format(' with check (%s)', r.chk) else '' end);
    if r.cmt is not null then
      execute format('comment on policy %I on %s is %L', r.polname, p_to, r.cmt);
    end if;
  end loop;
  -- grants
  for r in select case when a.grantee = 0 then 'public' else quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) end as grantee
           from pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a where c.oid = p_to and a.grantee <> c.relowner group by a.grantee loop
    execute format('revoke all on table %s from %s', p_to, r.grantee);
  end loop;
  for r in select case when a.grantee = 0 then 'public' else quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) end as grantee,
                  string_agg(a.privilege_type, ', ') as privs
           from pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a where c.oid = p_from and a.grantee <> c.relowner group by a.grantee loop
    execute format('grant %s on table %s to %s', r.privs, p_to, r.grantee);
  end loop;
  -- triggers the app has on the table (ours and the ones already there excepted)
  if p_copy_triggers then
    for r in select t.tgname, pg_catalog.pg_get_triggerdef(t.oid) as def from pg_catalog.pg_trigger t
             where t.tgrelid = p_from and not t.tgisinternal and t.tgname not like 'partition\_mgmt\_sync\_%'
               and not exists (select from pg_catalog.pg_trigger x where x.tgrelid = p_to and x.tgname = t.tgname) loop
      execute replace(r.def, format(' ON %s ', p_from), format(' ON %s ', p_to));
      v_carried := v_carried || r.tgname;
    end loop;
  end if;
  -- views (re-created from the text read before the renames) and materialized views (shadows)
  for v in select * from jsonb_array_elements(coalesce(p_plan, '[]'::jsonb)) loop
    if v ->> 'kind' = 'view' then
      execute format('create or replace view %s%s as %s', v ->> 'name',
        case when coalesce(v ->> 'options', '') <> '' then format(' with (%s)', v ->> 'options') else '' end, v ->> 'def');
    else
      execute format('drop materialized view %s', v ->> 'name');
      v_schema := split_part(v ->> 'name', '.', 1);
      execute format('alter materialized view %s rename to %s', v ->> 'shadow', split_part(v ->> 'name', '.', 2));
      for v_def in select jsonb_array_elements_text(v -> 'indexes') loop
        execute format('alter index %s.%I rename to %I', v_schema, left(v_def, 55) || '__mig', v_def);
      end loop;
    end if;
  end loop;
  -- sequences owned by the table's columns (serial): dropping the old table must not drop them
  for r in select s.objid::regclass as seq, a.attname from pg_catalog.pg_depend s
           join pg_catalog.pg_attribute a on a.attrelid = s.refobjid and a.attnum = s.refobjsubid
           where s.classid = 'pg_catalog.pg_class'::regclass and s.refobjid = p_from and s.deptype = 'a'
             and (select relkind from pg_catalog.pg_class where oid = s.objid) = 'S' loop
    execute format('alter sequence %s owned by %s.%I', r.seq, p_to, r.attname);
  end loop;
  -- publications (Supabase Realtime)
  for r in select p.pubname from pg_catalog.pg_publication_rel pr join pg_catalog.pg_publication p on p.oid = pr.prpubid where pr.prrelid = p_from loop
    execute format('alter publication %I drop table %s', r.pubname, p_from);
    execute format('alter publication %I add table %s', r.pubname, p_to);
    if (select relkind from pg_catalog.pg_class where oid = p_to) = 'p' then
      -- changes of the partitions are published as changes of the table (what Realtime subscribes to)
      execute format('alter publication %I set (publish_via_partition_root = true)', r.pubname);
    end if;
  end loop;
  return v_carried;
end
$$;

-- The row counts of the legacy table and the copy, in one snapshot; raises when they differ.
-- Taken just before the swap's lock (counting millions of rows under it would hold every reader
-- and writer that long): the two stay equal from then on because every write to one reaches the
-- other in the writer's transaction, which the checks under the lock make sure of.
create or replace function partition_mgmt.assert_equal_counts(p_table_key text, p_direction text)
returns bigint
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_legacy regclass := (select legacy_table from partition_mgmt.migration_state where table_key = p_table_key);
  v_a bigint;
  v_b bigint;
begin
  execute format('select (select count(*) from %s), (select count(*) from %s)', v_legacy, c.parent) into v_a, v_b;
  if v_a <> v_b then
    raise exception 'final check before the % swap failed for "%": % has % rows, % has %', p_direction, p_table_key, v_legacy, v_a, c.parent, v_b
      using errcode = 'data_exception', hint = format('Nothing was swapped. Run select * from partition_mgmt.post_migration_validation(%L).', p_table_key);
  end if;
  return v_a;
end
$$;

-- Takes ACCESS EXCLUSIVE on both tables with lock_timeout, retrying with backoff and jitter;
-- runs the swap (or the swap back) under the locks. Returns (attempts, held_ms). Locks taken in a
-- failed attempt are released with its subtransaction, so waiting readers are never queued for
-- long. Nothing under the lock visits every leaf: the triggers the live tree needs were put on the
-- copy, dormant, when the sync started, and the counts were compared just before.
create or replace function partition_mgmt.swap_critical(p_table_key text, p_direction text, p_lock_timeout text, p_attempts integer, p_plan jsonb,
  out attempts integer, out held_ms numeric)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_old_timeout text := current_setting('lock_timeout');
  v_legacy regclass;
  v_locked_at timestamptz;
  v_carried text[];
begin
  v_legacy := (select legacy_table from partition_mgmt.migration_state where table_key = p_table_key);
  attempts := 0;
  loop
    attempts := attempts + 1;
    begin
      perform set_config('lock_timeout', p_lock_timeout, true);
      -- the table the app uses first (the same order as the app's own statements)
      if p_direction = 'forward' then
        execute format('lock table only %s, %s in access exclusive mode', v_legacy, c.parent);
      else
        execute format('lock table only %s, %s in access exclusive mode', c.parent, v_legacy);
      end if;
      v_locked_at := clock_timestamp();

      if p_direction = 'forward' then
        -- the counts compared just before stay equal only while every write reaches both tables
        -- (offline, the legacy table is locked against writes instead)
        if (select s.mode from partition_mgmt.migration_state s where s.table_key = p_table_key) = 'online'
           and not exists (select from pg_catalog.pg_trigger where tgrelid = v_legacy and tgname = 'partition_mgmt_sync_to_partitioned' and tgenabled = 'O') then
          raise exception 'cannot swap "%": the sync trigger on % is missing or disabled, so the tables may differ', p_table_key, v_legacy
            using errcode = 'object_not_in_prerequisite_state',
                  hint = format('Nothing was swapped. Roll back (partition_mgmt.rollback_migration(%L)) and migrate again.', p_table_key);
        end if;
        if not exists (select from pg_catalog.pg_trigger where tgrelid = c.parent and tgname = 'partition_mgmt_sync_to_legacy') then
          raise exception 'cannot swap "%": the reverse sync trigger on % is missing', p_table_key, c.parent
            using errcode = 'object_not_in_prerequisite_state',
                  hint = format('Nothing was swapped. Roll back (partition_mgmt.rollback_migration(%L)) and migrate again.', p_table_key);
        end if;
        execute format('drop trigger if exists partition_mgmt_sync_to_partitioned on %s', v_legacy);
        execute format('alter table %s rename to %I', v_legacy, c.source_table || '_old');
        execute format('alter table %s rename to %I', c.parent, c.source_table);
        if partition_mgmt.in_realtime_publication(v_legacy) then
          perform partition_mgmt.set_realtime_feed_triggers(p_table_key, c.parent, true);
        end if;
        v_carried := partition_mgmt.carry_dependents(p_table_key, v_legacy, c.parent, p_plan, true);
        perform partition_mgmt.carry_references(p_table_key, v_legacy, c.parent);
        perform partition_mgmt.set_reverse_sync(p_table_key, true);
        update partition_mgmt.migration_state set carried_triggers = v_carried where table_key = p_table_key;
      else
        perform partition_mgmt.set_reverse_sync(p_table_key, false);
        perform partition_mgmt.set_realtime_feed_triggers(p_table_key, c.parent, false);
        execute format('alter table %s rename to %I', c.parent, c.partitioned_table);
        execute format('alter table %s rename to %I', v_legacy, c.source_table);
        perform partition_mgmt.carry_dependents(p_table_key, c.parent, v_legacy, p_plan, false);
        perform partition_mgmt.restore_references(p_table_key, c.parent);
      end if;
      perform partition_mgmt.install_read_api(p_table_key);
      held_ms := round(extract(epoch from clock_timestamp() - v_locked_at) * 1000, 2);
      perform set_config('lock_timeout', v_old_timeout, true);
      return;
    exception when lock_not_available then
      perform set_config('lock_timeout', v_old_timeout, true);
      perform partition_mgmt.log_migration(p_table_key, partition_mgmt.migration_phase(p_table_key), 'swap-wait',
        jsonb_build_object('attempt', attempts, 'lock_timeout', p_lock_timeout, 'direction', p_direction));
      if attempts >= p_attempts then
        raise exception 'swap of "%" (%) could not get ACCESS EXCLUSIVE on % and % within lock_timeout % after % attempts',
          p_table_key, p_direction, v_legacy, c.parent, p_lock_timeout, attempts
          using errcode = 'lock_not_available',
                hint = 'A long transaction holds a lock on one of the tables (see pg_locks / pg_stat_activity): let it finish and call the swap again. Nothing was changed.';
      end if;
      perform pg_sleep(least(5.0, 0.05 * power(2, least(attempts, 7))) * (0.5 + random() / 2));
    end;
  end loop;
end
$$;

create or replace function partition_mgmt.swap_tables(p_table text, p_lock_timeout text default '1s', p_attempts integer default 10, p_final_check text default 'count')
returns table (table_key text, phase text, attempts integer, lock_held_ms numeric, detail text)
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_phase text := partition_mgmt.migration_phase(v_key);
  v_plan jsonb;
  v_blocked text;
  r record;
begin
  if p_final_check not in ('count', 'none') then
    raise exception 'p_final_check must be count or none, got %', p_final_check using hint = 'count compares the row counts right before the lock (recommended).';
  end if;
  if v_phase = 'swapped' then
    return query select v_key, v_phase, 0, (select s.swap_lock_ms from partition_mgmt.migration_state s where s.table_key = v_key), 'already swapped';
    return;
  end if;
  if v_phase <> 'validated' then
    raise exception 'cannot swap "%": the migration is in phase %, not validated', v_key, v_phase
      using hint = format('Finish the backfill (partition_mgmt.migrate_to_partitioned) and run select * from partition_mgmt.post_migration_validation(%L) first.', v_key);
  end if;
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:migrate:' || v_key, 0));
  select string_agg(format('%s on %s: %s', f.constraint_name, f.child_table, f.reason), '; ') into v_blocked
  from partition_mgmt.referencing_foreign_keys(v_key, partition_mgmt.legacy_table(v_key)) f where not f.supported;
  if v_blocked is not null then
    raise exception 'cannot swap "%": foreign keys that cannot be carried reference it: %', v_key, v_blocked
      using errcode = 'feature_not_supported', hint = 'Drop or change those constraints (see pre_migration_check), then swap again. Nothing was changed.';
  end if;
  select format('%s write(s) (the last: %s of %s at %s)', count(*), (array_agg(w.operation order by w.at desc))[1],
                (array_agg(w.observation_id order by w.at desc))[1], max(w.at))
    into v_blocked from partition_mgmt.null_key_writes w where w.table_key = v_key having count(*) > 0;
  if v_blocked is not null then
    raise exception 'cannot swap "%": the app wrote % without %.% since the migration started; after the swap % is a NOT NULL partition key and those writes would fail',
      v_key, v_blocked, c.source_table, c.program_column, c.program_column
      using errcode = 'not_null_violation',
            hint = format('Make the app send %s (the program of the site), then run delete from partition_mgmt.null_key_writes where table_key = %L; and swap again. Nothing was changed.', c.program_column, v_key);
  end if;
  v_plan := partition_mgmt.prebuild_dependents(partition_mgmt.legacy_table(v_key), c.parent, format('%I.%I', c.source_schema, c.source_table));
  if partition_mgmt.in_realtime_publication(partition_mgmt.legacy_table(v_key)) then
    perform partition_mgmt.install_realtime_feed(v_key);   -- the swap only switches its triggers on
  end if;
  if p_final_check = 'count' then
    perform partition_mgmt.assert_equal_counts(v_key, 'forward');
  end if;
  select * into r from partition_mgmt.swap_critical(v_key, 'forward', p_lock_timeout, p_attempts, v_plan);
  update partition_mgmt.migration_state s set phase = 'swapped', swap_attempts = r.attempts, swap_lock_ms = r.held_ms, swapped_at = now(), updated_at = now()
  where s.table_key = v_key;
  perform partition_mgmt.log_migration(v_key, v_phase, 'swapped', jsonb_build_object('attempts', r.attempts, 'lock_held_ms', r.held_ms, 'dependents', v_plan));
  return query select v_key, 'swapped'::text, r.attempts, r.held_ms,
    format('%s is now the partitioned table; %s_old is kept in sync until finalize_migration or rollback_migration', c.source_table, c.source_table);
end
$$;

-- -----------------------------------------------------------------------------
-- Phase 8: rollback and finalize
-- -----------------------------------------------------------------------------

-- Empties the partitioned copy and its keys (nothing reads it while the legacy table is live).
create or replace function partition_mgmt.empty_partitioned_copy(p_table_key text)
returns void
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
begin
  if c.parent is not null then
    perform partition_mgmt.run_ddl(format('truncate table %s', c.parent));
  end if;
  delete from partition_mgmt.observation_keys where table_key = p_table_key;
end
$$;

create or replace function partition_mgmt.drop_migration_helpers(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  r record;
begin
  execute format('drop function if exists partition_mgmt.%I()', p_table_key || '_sync_to_partitioned');
  execute format('drop function if exists partition_mgmt.%I()', p_table_key || '_sync_to_legacy');
  for r in select format('%I.%I', n.nspname, c.relname) as name from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where c.relkind = 'm' and c.relname like '%\_\_mig' loop
    execute format('drop materialized view if exists %s', r.name);
  end loop;
  delete from partition_mgmt.null_key_writes where table_key = p_table_key;
  delete from partition_mgmt.migration_state where table_key = p_table_key;
end
$$;

-- Undoes the migration from any phase, and commits nothing but that: before the swap it drops the
-- sync trigger, after it swaps back (every write made since kept). The legacy table is live and
-- untouched when it returns. The copy, its keys and the triggers the migration put on it are
-- cleared by finish_rollback in a transaction of its own (the drivers, the admin function and
-- maintenance call it; prepare_migration does too), so that neither the swap back's lock nor the
-- sync trigger's lock is held while millions of rows are emptied.
create or replace function partition_mgmt.rollback_migration(p_table text, p_lock_timeout text default '1s', p_attempts integer default 10)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_phase text := partition_mgmt.migration_phase(v_key);
  v_legacy regclass;
  v_plan jsonb;
  v_leftover boolean := false;
  v_rows boolean;
  r record;
begin
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:migrate:' || v_key, 0));
  if v_phase = 'rolled_back' then
    return format('%s: already rolled back; select partition_mgmt.finish_rollback(%L) empties the copy', v_key, v_key);
  end if;
  if v_phase = 'idle' then
    -- nothing recorded; still clear what an interrupted run may have left
    v_legacy := to_regclass(format('%I.%I', c.source_schema, c.source_table));
    if v_legacy is not null and exists (select from pg_catalog.pg_trigger where tgrelid = v_legacy and tgname = 'partition_mgmt_sync_to_partitioned') then
      perform partition_mgmt.run_ddl(format('drop trigger partition_mgmt_sync_to_partitioned on %s', v_legacy));
      v_leftover := true;
    end if;
    if v_legacy is not null and (select relkind from pg_catalog.pg_class where oid = v_legacy) = 'r' and c.parent is not null then
      execute format('select exists (select from %s) or exists (select from partition_mgmt.observation_keys k where k.table_key = %L)', c.parent, v_key)
        into v_rows;
      v_leftover := v_leftover or v_rows;
    end if;
    if not v_leftover then
      perform partition_mgmt.drop_migration_helpers(v_key);
      return format('%s: no migration in progress; nothing to roll back', v_key);
    end if;
    insert into partition_mgmt.migration_state (table_key, phase, legacy_table) values (v_key, 'rolled_back', v_legacy);
    perform partition_mgmt.log_migration(v_key, 'idle', 'rolled_back', jsonb_build_object('leftover', true));
    return format('%s: the leftovers of an interrupted run are left for select partition_mgmt.finish_rollback(%L)', v_key, v_key);
  end if;
  v_legacy := partition_mgmt.legacy_table(v_key);
  if v_phase = 'swapped' then
    v_plan := partition_mgmt.prebuild_dependents(c.parent, v_legacy, format('%I.%I', c.source_schema, c.source_table));
    perform partition_mgmt.assert_equal_counts(v_key, 'back');
    select * into r from partition_mgmt.swap_critical(v_key, 'back', p_lock_timeout, p_attempts, v_plan);
    perform partition_mgmt.log_migration(v_key, 'swapped', 'swapped-back', jsonb_build_object('attempts', r.attempts, 'lock_held_ms', r.held_ms));
    update partition_mgmt.migration_state s set swap_lock_ms = r.held_ms where s.table_key = v_key;
  elsif exists (select from pg_catalog.pg_trigger where tgrelid = v_legacy and tgname = 'partition_mgmt_sync_to_partitioned') then
    perform partition_mgmt.run_ddl(format('drop trigger partition_mgmt_sync_to_partitioned on %s', v_legacy));
  end if;
  update partition_mgmt.migration_state s set phase = 'rolled_back', updated_at = now() where s.table_key = v_key;
  perform partition_mgmt.log_migration(v_key, v_phase, 'rolled_back', '{}'::jsonb);
  return format('%s: rolled back from phase %s; %s.%s is the legacy table again, untouched%s', v_key, v_phase, c.source_schema, c.source_table,
    case when v_phase = 'swapped' then ' and with every write made since the swap' else '' end)
    || case when exists (select from pg_catalog.pg_constraint k where k.contype = 'f' and k.confrelid = v_legacy and not k.convalidated)
            then format('; foreign keys to it are declared again NOT VALID: run select partition_mgmt.validate_restored_references(%L) to validate them', v_key)
            else '' end
    || format('; select partition_mgmt.finish_rollback(%L) empties the copy', v_key);
end
$$;

-- After rollback_migration, in a transaction of its own: the copy's migration triggers (reverse
-- sync, reference actions, the app's triggers carried at the swap) dropped, the copy and its keys
-- emptied, every helper and the state row gone. The app does not read or write the copy, so
-- nothing waits for this.
create or replace function partition_mgmt.finish_rollback(p_table text)
returns text
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_trigger text;
begin
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:migrate:' || v_key, 0));
  if partition_mgmt.migration_phase(v_key) <> 'rolled_back' then
    return format('%s: nothing to finish (phase %s)', v_key, partition_mgmt.migration_phase(v_key));
  end if;
  if c.parent is not null then
    for v_trigger in select unnest(s.carried_triggers) from partition_mgmt.migration_state s where s.table_key = v_key loop
      perform partition_mgmt.run_ddl(format('drop trigger if exists %I on %s', v_trigger, c.parent));
    end loop;
    perform partition_mgmt.run_ddl(format('drop trigger if exists partition_mgmt_sync_to_legacy on %s', c.parent));
    perform partition_mgmt.drop_reference_actions(c.parent);
  end if;
  perform partition_mgmt.empty_partitioned_copy(v_key);
  perform partition_mgmt.drop_migration_helpers(v_key);
  perform partition_mgmt.log_migration(v_key, 'rolled_back', 'idle', '{}'::jsonb);
  return format('%s: the copy %s is empty and every helper is gone', v_key, c.parent);
end
$$;

create or replace function partition_mgmt.finalize_migration(p_table text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_phase text := partition_mgmt.migration_phase(v_key);
  v_legacy regclass;
  v_deps text;
begin
  if v_phase <> 'swapped' then
    raise exception 'cannot finalize "%": the migration is in phase %, not swapped', v_key, v_phase
      using hint = 'Finalize drops the legacy table: it is allowed only after swap_tables.';
  end if;
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:migrate:' || v_key, 0));
  v_legacy := partition_mgmt.legacy_table(v_key);
  select string_agg(d.view_name, ', ') into v_deps from partition_mgmt.dependent_views(v_legacy) d;
  if v_deps is not null then
    raise exception 'cannot drop %: still used by %', v_legacy, v_deps
      using hint = 'Re-point those views at the live table, then finalize again.';
  end if;
  -- the reverse sync goes dormant first (one catalog row), so that the trigger's drop below only
  -- waits for its lock, never for a write into the legacy table
  perform partition_mgmt.set_reverse_sync(v_key, false);
  perform partition_mgmt.run_ddl(format('drop trigger if exists partition_mgmt_sync_to_legacy on %s', c.parent));
  v_deps := v_legacy::text;
  perform partition_mgmt.run_ddl(format('drop table %s', v_legacy));
  perform partition_mgmt.drop_migration_helpers(v_key);
  perform partition_mgmt.log_migration(v_key, 'swapped', 'finalized', jsonb_build_object('dropped', v_deps));
  return format('%s: finalized; %s dropped, no trigger or helper left', v_key, v_deps);
end
$$;

create or replace function partition_mgmt.set_postpone_swap(p_table text, p_postpone boolean)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
begin
  update partition_mgmt.migration_state set postpone_swap = coalesce(p_postpone, true), updated_at = now() where table_key = v_key;
  if not found then
    raise exception 'no migration of "%" is in progress', v_key using hint = 'Start one with partition_mgmt.safe_migrate_table(table, false).';
  end if;
  perform partition_mgmt.log_migration(v_key, partition_mgmt.migration_phase(v_key), partition_mgmt.migration_phase(v_key), jsonb_build_object('postpone_swap', p_postpone));
  return coalesce(p_postpone, true);
end
$$;

-- -----------------------------------------------------------------------------
-- The plan's entry point: dry run, or advance as far as one transaction may
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.safe_migrate_table(p_table text, p_dry_run boolean default true, p_postpone_swap boolean default true)
returns table (step integer, phase text, action text, status text, detail text)
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables := partition_mgmt.config(v_key);
  v_phase text := partition_mgmt.migration_phase(v_key);
  v_legacy regclass;
  v_n bigint;
  v_missing bigint;
  v_blockers bigint;
  r record;
begin
  step := 0;
  if p_dry_run then
    phase := v_phase;
    for r in select * from partition_mgmt.pre_migration_check(v_key) k where k.status <> 'ok' loop
      step := step + 1; action := 'check: ' || r.check_name; status := r.status; detail := r.detail; return next;
    end loop;
    select count(*) filter (where k.status = 'blocker') into v_blockers from partition_mgmt.pre_migration_check(v_key) k;
    if v_phase <> 'idle' then
      step := step + 1; action := 'state'; status := 'info';
      detail := format('a migration is in phase %s: safe_migrate_table(%L, false) continues it', v_phase, p_table); return next;
      return;
    end if;
    v_legacy := partition_mgmt.legacy_table(v_key);
    execute format('select count(*) from %s', v_legacy) into v_n;
    if c.parent is not null then
      execute format(
        'select count(*) from (select distinct coalesce(l.%1$I, (select s.program_id from public.sites s where s.site_id = l.%2$I)) as program_id, l.%2$I as site_id,
                                 date_trunc(''month'', l.%3$I at time zone ''UTC'') at time zone ''UTC'' as m from %4$s l) x
         where not exists (select from partition_mgmt.partition_registry g where g.table_key = %5$L and g.program_id = x.program_id and g.site_id = x.site_id
                           and not g.is_default and g.is_leaf and (g.range_start is null or (g.range_start <= x.m and g.range_end > x.m)))',
        c.program_column, c.site_column, c.time_column, v_legacy, v_key) into v_missing;
    end if;
    step := step + 1; action := 'prepare'; status := 'plan';
    detail := format('create %s for the program/site/month combinations present in the data (plus every program''s months via precreate_program_partitions); carry %s foreign key(s) and plain indexes to %s',
      case when c.parent is null then 'the partitioned table and its partitions' else coalesce(v_missing, 0)::text || ' leaf partition(s)' end,
      (select count(*) from pg_catalog.pg_constraint where conrelid = v_legacy and contype = 'f'), coalesce(c.parent::text, c.partitioned_table));
    return next;
    step := step + 1; action := 'sync'; status := 'plan';
    detail := format('create trigger on %s (SHARE ROW EXCLUSIVE, lock_timeout %s, up to 8 tries with backoff): inserts, updates and deletes are applied to the copy in the same transaction',
      v_legacy, coalesce(nullif(current_setting('partition_mgmt.lock_timeout', true), ''), '500ms'));
    return next;
    step := step + 1; action := 'backfill'; status := 'plan';
    detail := format('%s rows in keyset batches by %s (each batch FOR SHARE on its rows: an update or delete of them waits at most one batch); resumable from the high-water mark', v_n, c.id_column);
    return next;
    step := step + 1; action := 'validate'; status := 'plan';
    detail := 'row count, counts per program/site/month and a content checksum of both tables, in one snapshot each';
    return next;
    step := step + 1; action := 'swap'; status := case when p_postpone_swap then 'postponed' else 'plan' end;
    detail := format('ACCESS EXCLUSIVE on %s and the copy (lock_timeout 1s, 10 tries with backoff), final count, renames (%s -> %s_old, copy -> %s), policies, grants, triggers, views, publications carried; reverse sync keeps %s_old exact%s',
      v_legacy, c.source_table, c.source_table, c.source_table, c.source_table,
      case when p_postpone_swap then '; postponed until swap_tables() or set_postpone_swap(false)' else '' end);
    return next;
    step := step + 1; action := 'verdict'; status := case when v_blockers > 0 then 'blocker' else 'ok' end;
    detail := case when v_blockers > 0 then format('%s blocker(s): fix them first', v_blockers) else 'ready: nothing was changed (dry run)' end;
    return next;
    return;
  end if;

  -- advance
  if v_phase in ('idle', 'preparing', 'rolled_back') then
    step := step + 1; action := 'prepare'; detail := partition_mgmt.prepare_migration(v_key);
    update partition_mgmt.migration_state s set postpone_swap = p_postpone_swap where s.table_key = v_key;
    v_phase := partition_mgmt.migration_phase(v_key);
    phase := v_phase; status := case when v_phase = 'prepared' then 'done' else 'pending' end;
    return next;
    if v_phase <> 'prepared' then
      return;   -- the lock budget of this transaction is spent: commit, then call again
    end if;
  end if;
  if v_phase = 'prepared' then
    step := step + 1; action := 'sync'; status := 'done'; detail := partition_mgmt.start_sync(v_key); phase := 'syncing'; return next;
    v_phase := 'syncing';
  end if;
  if v_phase in ('syncing', 'backfilling') then
    step := step + 1; action := 'backfill'; status := 'pending'; phase := v_phase;
    detail := format('run select * from partition_mgmt.migrate_to_partitioned(10000, null, %L) until done (commit between calls), or run the statement partition_mgmt.migration_runner(%L) returns', v_key, v_key);
    return next;
    return;
  end if;
  if v_phase = 'backfilled' then
    step := step + 1; action := 'validate'; phase := v_phase;
    select count(*) filter (where v.status <> 'ok') into v_n from partition_mgmt.post_migration_validation(v_key) v;
    v_phase := partition_mgmt.migration_phase(v_key);
    status := case when v_n = 0 then 'done' else 'mismatch' end;
    detail := case when v_n = 0 then 'tables equal' else format('see select * from partition_mgmt.post_migration_validation(%L)', v_key) end;
    return next;
  end if;
  if v_phase = 'validated' then
    if (select s.postpone_swap from partition_mgmt.migration_state s where s.table_key = v_key) and p_postpone_swap then
      step := step + 1; action := 'swap'; status := 'postponed'; phase := v_phase;
      detail := format('validated; swap with select * from partition_mgmt.swap_tables(%L)', v_key); return next;
      return;
    end if;
    step := step + 1; action := 'swap'; phase := 'swapped';
    select format('attempts %s, ACCESS EXCLUSIVE held %s ms', s.attempts, s.lock_held_ms) into detail from partition_mgmt.swap_tables(v_key) s;
    status := 'done'; return next;
    return;
  end if;
  step := step + 1; action := 'none'; status := 'info'; phase := v_phase;
  detail := format('%s: swapped; finalize_migration(%L) drops the legacy table, rollback_migration(%L) swaps back', v_key, v_key, v_key);
  return next;
end
$$;

-- -----------------------------------------------------------------------------
-- Option B: maintenance window (small tables). One transaction: the legacy table is locked
-- against writes, copied with one INSERT … SELECT, validated and swapped the same way.
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.offline_migrate_table(p_table text, p_lock_timeout text default '1s', p_attempts integer default 10)
returns table (table_key text, phase text, rows_copied bigint, lock_held_ms numeric, detail text)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  c partition_mgmt.managed_tables;
  v_legacy regclass;
  v_n bigint;
  v_bad bigint;
  r record;
begin
  if partition_mgmt.migration_phase(v_key) <> 'idle' then
    raise exception 'a migration of "%" is already in phase %', v_key, partition_mgmt.migration_phase(v_key)
      using hint = format('Continue it, or select partition_mgmt.rollback_migration(%L) first.', v_key);
  end if;
  perform partition_mgmt.prepare_migration(v_key, 'offline');
  if partition_mgmt.migration_phase(v_key) <> 'prepared' then
    raise exception 'the partitions of "%" do not fit in one transaction''s lock budget', v_key
      using hint = 'Migrate online (safe_migrate_table(table, false) until prepared, or the statement migration_runner(table) returns): it prepares in several transactions.';
  end if;
  c := partition_mgmt.config(v_key);
  v_legacy := partition_mgmt.legacy_table(v_key);
  perform partition_mgmt.install_sync_functions(v_key);
  perform partition_mgmt.install_copy_triggers(v_key);
  -- the "stopped application": writers wait on this lock until the swap commits
  perform partition_mgmt.run_ddl(format('lock table %s in exclusive mode', v_legacy), p_lock_timeout, p_attempts);
  -- in leaf order (see backfill_batch)
  execute format('insert into %s (%s) select %s from %s l order by l.%I, l.%I', c.parent, partition_mgmt.column_list(c.parent),
    partition_mgmt.legacy_select_list(v_key, 'l'), v_legacy, c.site_column, c.time_column);
  get diagnostics v_n = row_count;
  update partition_mgmt.migration_state s set phase = 'backfilled', rows_scanned = v_n, rows_copied = v_n, updated_at = now() where s.table_key = v_key;
  perform partition_mgmt.log_migration(v_key, 'prepared', 'backfilled', jsonb_build_object('rows', v_n, 'mode', 'offline'));
  select count(*) filter (where v.status <> 'ok') into v_bad from partition_mgmt.post_migration_validation(v_key) v;
  if v_bad > 0 then
    raise exception 'offline copy of "%" does not match the legacy table', v_key
      using hint = 'Nothing was changed (the transaction rolls back). Inspect with the online phases: safe_migrate_table(table, false).';
  end if;
  select * into r from partition_mgmt.swap_tables(v_key, p_lock_timeout, p_attempts);
  return query select v_key, 'swapped'::text, v_n, r.lock_held_ms, format('%s rows copied in a maintenance window; rollback_migration and finalize_migration work as after an online swap', v_n);
end
$$;

-- -----------------------------------------------------------------------------
-- The orchestrator: the phase sequence, in one place. migration_next_step() says what comes next,
-- migration_step() does it in the caller's transaction (one transaction's worth: prepare as far as
-- the lock budget goes, the sync, a bounded backfill call, the validation, the swap) and every
-- driver loops over it with a commit in between: scripts/lib/migration-driver.ts (npm start, the
-- tests, the bench), the admin action `step` (partition-admin, npm run admin -- migrate), and the
-- DO block migration_runner() returns (psql, pg_cron). The swap runs from a session of its own:
-- a session that has touched every leaf (the backfill's) processes the swap's catalog changes
-- slowly, under ACCESS EXCLUSIVE. (A procedure that commits cannot pin its search_path, which
-- Supabase's advisor flags, so there is none.)
-- -----------------------------------------------------------------------------

-- prepare, sync, backfill, validate, swap (only when p_swap) or done.
create or replace function partition_mgmt.migration_next_step(p_table text, p_swap boolean default true)
returns text
language sql stable
set search_path = ''
as $$
  select case partition_mgmt.migration_phase(partition_mgmt.resolve_table_key(p_table))
    when 'idle' then 'prepare' when 'preparing' then 'prepare' when 'rolled_back' then 'prepare'
    when 'prepared' then 'sync'
    when 'syncing' then 'backfill' when 'backfilling' then 'backfill'
    when 'backfilled' then 'validate'
    when 'validated' then case when p_swap then 'swap' else 'done' end
    else 'done' end
$$;

create or replace function partition_mgmt.migration_step(p_table text, p_swap boolean default true, p_batch_size integer default 10000,
  p_max_batches integer default 1, p_max_seconds numeric default null, p_lock_timeout text default '1s', p_attempts integer default 10)
returns table (step text, phase text, next_step text, result jsonb)
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  v_rows jsonb;
  v_bad jsonb;
  v_target numeric;
  v_size integer;
begin
  if p_batch_size is null or p_batch_size < 1 or p_max_batches is null or p_max_batches < 1 then
    raise exception 'batch size and batches per step must be positive, got % and %', p_batch_size, p_max_batches;
  end if;
  step := partition_mgmt.migration_next_step(v_key, coalesce(p_swap, false));
  case step
  when 'prepare' then
    result := jsonb_build_object('message', partition_mgmt.prepare_migration(v_key));
  when 'sync' then
    result := jsonb_build_object('message', partition_mgmt.start_sync(v_key));
  when 'backfill' then
    -- A batch holds FOR SHARE on its rows until it commits: an app update of one of them waits
    -- for the whole batch. So the batch is sized by time, not by rows: from the last batch's
    -- rows and milliseconds toward partition_mgmt.backfill_batch_ms (default 250 ms), between
    -- 100 rows (or p_batch_size, if smaller) and p_batch_size, starting at 1,000.
    v_target := coalesce(nullif(current_setting('partition_mgmt.backfill_batch_ms', true), '')::numeric, 250);
    select case when s.last_batch_rows is null or coalesce(s.last_batch_ms, 0) <= 0 then least(p_batch_size, 1000)
                else greatest(least(100, p_batch_size), least(p_batch_size, round(s.last_batch_rows * least(2.0, v_target / s.last_batch_ms))))::integer end
      into v_size
    from partition_mgmt.migration_state s where s.table_key = v_key;
    select to_jsonb(m) || jsonb_build_object('batch_size', v_size) into result
    from partition_mgmt.migrate_to_partitioned(coalesce(v_size, least(p_batch_size, 1000)), null, v_key, p_max_batches, p_max_seconds) m;
    if result ->> 'error' is not null then
      raise exception 'backfill of % stopped: %', v_key, result ->> 'error'
        using hint = 'Fix the cause and take the next step again: the backfill resumes at the high-water mark.';
    end if;
  when 'validate' then
    select coalesce(jsonb_agg(to_jsonb(v)), '[]'::jsonb) into v_rows from partition_mgmt.post_migration_validation(v_key) v;
    v_bad := jsonb_path_query_array(v_rows, '$[*] ? (@.status != "ok")');
    if jsonb_array_length(v_bad) > 0 then
      raise exception 'validation of % found differences between the legacy table and the copy: %', v_key, v_bad
        using errcode = 'data_exception',
              hint = format('See select * from partition_mgmt.post_migration_validation(%L); rollback_migration(%L) starts over.', v_key, v_key);
    end if;
    result := jsonb_build_object('rows', v_rows);
  when 'swap' then
    select jsonb_build_object('rows', coalesce(jsonb_agg(to_jsonb(w)), '[]'::jsonb)) into result
    from partition_mgmt.swap_tables(v_key, p_lock_timeout, p_attempts) w;
  else
    result := null;
  end case;
  phase := partition_mgmt.migration_phase(v_key);
  next_step := partition_mgmt.migration_next_step(v_key, coalesce(p_swap, false));
  return next;
end
$$;

-- The statement that runs the whole migration of p_table in psql or a pg_cron job, committing
-- after every step (select partition_mgmt.migration_runner('petri_observations', p_swap => true) \gexec).
-- It stops before the swap unless the swap is its first step: run it again (a new session) to swap.
create or replace function partition_mgmt.migration_runner(p_table text, p_swap boolean default false, p_batch_size integer default 10000,
  p_throttle_ms integer default 0)
returns text
language plpgsql stable
set search_path = ''
as $fn$
begin
  if p_batch_size is null or p_batch_size < 1 or p_throttle_ms is null or p_throttle_ms < 0 then
    raise exception 'batch size must be positive and throttle a non-negative number of milliseconds, got % and %', p_batch_size, p_throttle_ms;
  end if;
  return format($f$do $run$
declare
  r record;
begin
  loop
    select * into r from partition_mgmt.migration_step(%1$L, %2$s, %3$s);
    commit;
    exit when r.next_step = 'done';
    if r.next_step = 'swap' then
      raise notice '%%: validated; run this statement again: the swap runs first, in a session of its own', %1$L;
      exit;
    end if;
    if r.step = 'backfill' and %4$s > 0 then
      perform pg_catalog.pg_sleep(%4$s / 1000.0);
    end if;
  end loop;
  raise notice '%%: %%', %1$L, r.phase;
end $run$
$f$, partition_mgmt.resolve_table_key(p_table), coalesce(p_swap, false)::text, p_batch_size, p_throttle_ms);
end
$fn$;

-- -----------------------------------------------------------------------------
-- Privileges: operators (postgres) and service_role only
-- -----------------------------------------------------------------------------
revoke all on function partition_mgmt.pre_migration_check(text), partition_mgmt.prepare_migration(text, text), partition_mgmt.start_sync(text),
  partition_mgmt.migrate_to_partitioned(integer, uuid, text, integer, numeric), partition_mgmt.monitor_migration(text),
  partition_mgmt.post_migration_validation(text), partition_mgmt.swap_tables(text, text, integer, text), partition_mgmt.rollback_migration(text, text, integer),
  partition_mgmt.finalize_migration(text), partition_mgmt.set_postpone_swap(text, boolean), partition_mgmt.safe_migrate_table(text, boolean, boolean),
  partition_mgmt.offline_migrate_table(text, text, integer), partition_mgmt.migration_in_progress(text), partition_mgmt.legacy_table(text),
  partition_mgmt.finish_rollback(text), partition_mgmt.plan_tree(text, regclass)
  from public, anon, authenticated;
revoke all on function partition_mgmt.migration_next_step(text, boolean), partition_mgmt.migration_step(text, boolean, integer, integer, numeric, text, integer),
  partition_mgmt.migration_runner(text, boolean, integer, integer)
  from public, anon, authenticated;
grant execute on function partition_mgmt.pre_migration_check(text), partition_mgmt.prepare_migration(text, text), partition_mgmt.start_sync(text),
  partition_mgmt.migrate_to_partitioned(integer, uuid, text, integer, numeric), partition_mgmt.monitor_migration(text),
  partition_mgmt.post_migration_validation(text), partition_mgmt.swap_tables(text, text, integer, text), partition_mgmt.rollback_migration(text, text, integer),
  partition_mgmt.finalize_migration(text), partition_mgmt.set_postpone_swap(text, boolean), partition_mgmt.safe_migrate_table(text, boolean, boolean),
  partition_mgmt.offline_migrate_table(text, text, integer), partition_mgmt.migration_in_progress(text), partition_mgmt.legacy_table(text),
  partition_mgmt.finish_rollback(text), partition_mgmt.plan_tree(text, regclass)
  to service_role;
grant execute on function partition_mgmt.migration_next_step(text, boolean), partition_mgmt.migration_step(text, boolean, integer, integer, numeric, text, integer),
  partition_mgmt.migration_runner(text, boolean, integer, integer)
  to service_role;

comment on function partition_mgmt.safe_migrate_table(text, boolean, boolean) is
  'Dry run (default): the plan (checks, partitions to create, rows, lock steps) without changing anything. Otherwise advances the online migration as far as one transaction may: prepare, sync, validate, and the swap unless postponed.';
comment on function partition_mgmt.migrate_to_partitioned(integer, uuid, text, integer, numeric) is
  'Backfill step: up to p_max_batches keyset batches (FOR SHARE on the batch rows, ON CONFLICT DO NOTHING) in the caller''s transaction; commit between calls. Resumes from the recorded high-water mark.';
comment on function partition_mgmt.swap_tables(text, text, integer, text) is
  'Swaps the validated partitioned copy in under the legacy name (lock_timeout with retries, final count under the lock), carrying policies, grants, triggers, views, publications; the legacy table stays in sync as <table>_old.';
comment on function partition_mgmt.rollback_migration(text, text, integer) is
  'Undoes the migration from any phase: before the swap drops the sync trigger and the copy''s rows; after it swaps back with every write made since. Leaves no trigger, state or helper.';
comment on function partition_mgmt.finalize_migration(text) is
  'After the swap, on request only: drops <table>_old, the reverse sync trigger and every helper.';

-- Functions of this migration are executable by those granted above only (PostgreSQL grants
-- EXECUTE to PUBLIC by default, and per-schema default privileges cannot take that away).
revoke execute on all routines in schema partition_mgmt from public;
