-- =============================================================================
-- The online migration's state: one row per table (migration_state), its log, and the helpers the
-- phases share (the legacy table, column drift, dependent views).
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
  publications      jsonb not null default '[]'::jsonb,  -- what the swap did to publications, undone by the swap back
  realtime_feed     regclass,                   -- the change feed the swap created: finish_rollback drops it
  copy_security     jsonb,                      -- the copy's RLS, policies, grants before the swap (table_security), given back by the swap back
  copy_replica_identity "char",                 -- the copy's REPLICA IDENTITY before the sync carried the legacy one, given back by finish_rollback
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

-- Whether the legacy table lets a row go without a program (gasifier_observations): such rows are
-- copied with their site's program and listed in partition_mgmt.rows_without_program.
create or replace function partition_mgmt.legacy_program_nullable(p_table_key text)
returns boolean
language sql stable
set search_path = ''
as $$
  select not a.attnotnull from pg_catalog.pg_attribute a join partition_mgmt.managed_tables m on m.table_key = p_table_key
  where a.attrelid = partition_mgmt.legacy_table(p_table_key) and a.attname = m.program_column and not a.attisdropped
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
  v_nullable boolean := partition_mgmt.legacy_program_nullable(p_table_key);
begin
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
