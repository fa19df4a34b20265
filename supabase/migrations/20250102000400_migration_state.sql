-- =============================================================================
-- The online migration (the plan's 006), first of its files: its state, its log, the phases, the
-- helpers on the legacy table, monitor_migration, the Realtime change feed, what the swap does to
-- publications, REPLICA IDENTITY.
--
--   idle -prepare-> prepared -start sync-> syncing -backfill-> backfilled -validate-> validated
--        -swap-> swapped -finalize-> finalized;   any phase -rollback-> rolled_back -finish_rollback-> idle
--
-- One file per phase, in dependency order (each calls only what it or an earlier file defines):
-- 0410 sync, 0420 validation, 0430 swap, 0440 rollback and finalize, 0450 pre-checks and prepare,
-- 0460 backfill, 0470 the orchestrator (migration_step) and the privileges. A function cannot
-- COMMIT, so each phase takes bounded steps and the drivers commit between them. Nothing here runs at
-- `db push` time. The phases, for operators: docs/operating-the-migration.md.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

-- -----------------------------------------------------------------------------
-- State
-- -----------------------------------------------------------------------------

-- The change feed a swap created for a table stays its table after the migration ends (finalize
-- keeps it: Realtime subscribers read it): maintenance trims only this one, never a table of the
-- project's that happens to have the feed's name.
alter table partition_mgmt.managed_tables add column if not exists realtime_feed regclass;
comment on column partition_mgmt.managed_tables.realtime_feed is
  'The Realtime change feed the swap created for this table (public.<table>_changes); maintenance keeps an hour of it. NULL when there is none.';

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
-- Realtime after the swap, and what the swap does to publications
--
-- Supabase Realtime's Postgres Changes decode the WAL with wal2json (add-tables: the tables
-- pg_publication_tables lists for supabase_realtime) and match subscribers by the table name of
-- each change. wal2json reports a change of a partitioned table under the name of the leaf that
-- holds the row, so once the partitioned table is live a subscriber of public.petri_observations
-- receives nothing, whatever the publication's publish_via_partition_root: with false the
-- publication lists the leaves and their changes go out under the leaves' names; with true it lists
-- the table, and wal2json drops the leaves' changes. A partitioned table with a Realtime audience
-- gets a change feed instead: public.<table>_changes, a plain table in supabase_realtime, one row
-- per changed row (op, record, old_record), written by statement-level triggers on the partitioned
-- table, whose transition tables see a row moved to another partition as the UPDATE it is
-- (row-level triggers on the leaves see a DELETE and an INSERT). It has RLS by company, so Realtime
-- delivers each change only to subscribers who may read it. Maintenance keeps an hour.
--
-- The swap changes only the table's own membership of publications, never a publication's options:
-- publish_via_partition_root applies to every partitioned table of a publication, so setting it
-- would change what the subscribers of the project's other partitioned tables receive.
--   * The legacy table (renamed <table>_old, still written by the reverse sync) leaves each
--     publication that names it: left in, every write would be published again under that name.
--   * The partitioned table takes its place where the publication has publish_via_partition_root =
--     true (its changes go out under its own name, as before); elsewhere it stays out, because its
--     changes would go out under the partitions' names, which no subscriber asked for.
--   * The change feed joins supabase_realtime.
-- A publication FOR ALL TABLES or FOR TABLES IN SCHEMA stays as it is (one table cannot be taken out
-- of it). publication_plan says what the swap will do (the pre-check shows it); swap_publications
-- does it under the swap's lock, records each change in migration_state.publications and, one row
-- per object, in private.deploy_report, and undoes it in the swap back: after a rollback every
-- publication has the tables and options it had. finish_rollback drops the feed.
-- -----------------------------------------------------------------------------

-- Whether supabase_realtime publishes the table: by name, FOR ALL TABLES or FOR TABLES IN SCHEMA.
create or replace function partition_mgmt.in_realtime_publication(p_table regclass)
returns boolean
language sql stable
set search_path = ''
as $$
  select exists (select from pg_catalog.pg_publication p
                 where p.pubname = 'supabase_realtime'
                   and (p.puballtables
                        or exists (select from pg_catalog.pg_publication_rel pr where pr.prpubid = p.oid and pr.prrelid = p_table)
                        or exists (select from pg_catalog.pg_publication_namespace pn join pg_catalog.pg_class k on k.relnamespace = pn.pnnspid
                                   where pn.pnpubid = p.oid and k.oid = p_table)))
$$;

create or replace function partition_mgmt.realtime_feed_name(p_table_key text)
returns text
language sql stable
set search_path = ''
as $$
  select format('%I.%I', m.source_schema, m.source_table || '_changes') from partition_mgmt.managed_tables m where m.table_key = p_table_key
$$;

-- What the swap does to the publications that publish the legacy table: one row per object, named
-- as private.deploy_report names it ('publication <name>: table <table>'), with the action (added,
-- removed, replaced, unchanged), why, the membership's column list and row filter (carried), and
-- whether the caller may alter the publication (its owner or a member of the owner's role).
create or replace function partition_mgmt.publication_plan(p_table_key text)
returns table (publication name, object text, action text, relation text, detail text, column_list text, row_filter text,
               owner name, may_alter boolean)
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_legacy regclass := partition_mgmt.legacy_table(p_table_key);
  v_name text := format('%I.%I', c.source_schema, c.source_table);
  v_old text := format('%I.%I', c.source_schema, c.source_table || '_old');
  v_feed text := partition_mgmt.realtime_feed_name(p_table_key);
  v_implicit text;
  r record;
begin
  for r in select p.pubname, p.pubviaroot, p.puballtables, p.pubowner,
                  pr.oid is not null as named,
                  exists (select from pg_catalog.pg_publication_namespace pn where pn.pnpubid = p.oid and pn.pnnspid = c.source_schema::regnamespace) as by_schema,
                  (select '(' || string_agg(format('%I', a.attname), ', ' order by a.attnum) || ')' from pg_catalog.pg_attribute a
                   where a.attrelid = pr.prrelid and a.attnum = any (pr.prattrs::int2[])) as cols,
                  pg_catalog.pg_get_expr(pr.prqual, pr.prrelid) as filter
           from pg_catalog.pg_publication p
           left join pg_catalog.pg_publication_rel pr on pr.prpubid = p.oid and pr.prrelid = v_legacy
           order by p.pubname loop
    continue when not (r.named or r.by_schema or r.puballtables);
    publication := r.pubname;
    owner := pg_catalog.pg_get_userbyid(r.pubowner);
    may_alter := pg_catalog.pg_has_role(current_user, r.pubowner, 'USAGE');
    v_implicit := case when r.puballtables then 'FOR ALL TABLES' when r.by_schema then format('FOR TABLES IN SCHEMA %I', c.source_schema) end;
    object := format('publication %s: table %s', quote_ident(r.pubname), v_name);
    relation := 'table';
    column_list := r.cols;
    row_filter := r.filter;
    if not r.named then
      action := 'unchanged';
      detail := format('%I publishes %s (%s), which the swap leaves as it is: one table cannot be taken out of it. After the swap it publishes %s (written until finalize or rollback) and the partitioned table''s changes under %s',
        r.pubname, v_name, v_implicit, v_old,
        case when r.pubviaroot then format('its own name (publish_via_partition_root = true)') else 'its partitions'' names (publish_via_partition_root = false)' end);
    elsif r.pubviaroot then
      action := 'replaced';
      detail := format('at the swap the partitioned table that takes the name %s replaces the legacy table (renamed %s) in %I%s: %I publishes a partitioned table''s changes under its own name (publish_via_partition_root = true), so its subscribers go on receiving them as %s',
        v_name, v_old, r.pubname,
        case when r.cols is not null or r.filter is not null then format(', with the same%s%s', ' columns ' || r.cols, ' and row filter ' || r.filter) else '' end,
        r.pubname, v_name);
    else
      action := 'removed';
      detail := format('at the swap the legacy table (renamed %s, written until finalize or rollback) leaves %I, which would otherwise publish every write again under that name. The partitioned table that takes the name %s is not added: %I publishes a partitioned table''s changes under its partitions'' names (publish_via_partition_root = false), which no subscriber of %s matches, and that option applies to every table in %I, so the swap leaves it as it is',
        v_old, r.pubname, v_name, r.pubname, v_name, r.pubname);
    end if;
    if r.named and v_implicit is not null then
      detail := detail || format(' (%s also publishes it %s)', quote_ident(r.pubname), v_implicit);
    end if;
    if r.pubname = 'supabase_realtime' then
      detail := detail || format('. Realtime subscribers of %s receive nothing from the partitioned table whatever the publication says (wal2json reports the partitions'' names): they subscribe to the INSERTs of %s', v_name, v_feed);
    end if;
    return next;

    if r.pubname = 'supabase_realtime' then
      object := format('publication supabase_realtime: table %s', v_feed);
      relation := 'feed';
      column_list := null;
      row_filter := null;
      if v_implicit is not null then
        action := 'unchanged';
        detail := format('the change feed of %s is published %s like every table of %I', v_name, v_implicit, c.source_schema);
      else
        action := 'added';
        detail := format('at the swap the change feed of %s joins supabase_realtime: one row per changed row (op, record after, old_record before), which RLS shows only to the signed-in users of the row''s company. Realtime reports a partitioned table''s changes under its partitions'' names, so the subscribers of %s subscribe to its INSERTs instead',
          v_name, v_name);
      end if;
      return next;
    end if;
  end loop;
end
$$;

-- Under the swap's lock: 'forward' applies publication_plan, 'back' undoes, newest first, what the
-- forward swap recorded in migration_state.publications (a membership the project changed in
-- between is left as it is). Each change goes to private.deploy_report.
create or replace function partition_mgmt.swap_publications(p_table_key text, p_direction text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_legacy regclass := partition_mgmt.legacy_table(p_table_key);
  v_feed regclass := to_regclass(partition_mgmt.realtime_feed_name(p_table_key));
  v_name text := format('%I.%I', c.source_schema, c.source_table);
  v_done jsonb := '[]'::jsonb;
  v_denied text;
  v_pub name;
  v_action text;
  v_detail text;
  v_add_legacy text;
  r record;
  e jsonb;
begin
  if p_direction not in ('forward', 'back') then
    raise exception 'p_direction must be forward or back, got %', p_direction;
  end if;
  if p_direction = 'forward' then
    select string_agg(format('%I (owner %I)', p.publication, p.owner), ', ') into v_denied
    from partition_mgmt.publication_plan(p_table_key) p where p.action <> 'unchanged' and not p.may_alter;
    if v_denied is not null then
      raise exception 'cannot swap "%": % may not alter publication(s) % that publish %', p_table_key, current_user, v_denied, v_legacy
        using errcode = 'insufficient_privilege',
              hint = 'Nothing was changed. Swap as the publications'' owner (or a member of its role), or make postgres their owner (alter publication … owner to postgres), then swap again.';
    end if;
    for r in select * from partition_mgmt.publication_plan(p_table_key) loop
      if r.action in ('removed', 'replaced') then
        execute format('alter publication %I drop table %s', r.publication, v_legacy);
      end if;
      if r.action = 'replaced' then
        execute format('alter publication %I add table %s%s%s', r.publication, c.parent, ' ' || r.column_list, ' where (' || r.row_filter || ')');
      elsif r.action = 'added' then
        execute format('alter publication %I add table only %s', r.publication, v_feed);
      end if;
      v_done := v_done || jsonb_build_object('publication', r.publication, 'object', r.object, 'action', r.action, 'relation', r.relation,
                                             'column_list', r.column_list, 'row_filter', r.row_filter);
      insert into private.deploy_report (object, action, detail) values (r.object, r.action, r.detail)
      on conflict (object) do update set action = excluded.action, detail = excluded.detail, at = now();
    end loop;
    update partition_mgmt.migration_state s set publications = v_done where s.table_key = p_table_key;
    return v_done;
  end if;

  select string_agg(distinct format('%I (owner %I)', p.pubname, pg_catalog.pg_get_userbyid(p.pubowner)), ', ') into v_denied
  from partition_mgmt.migration_state s, jsonb_array_elements(s.publications) x
  join pg_catalog.pg_publication p on p.pubname = x ->> 'publication'
  where s.table_key = p_table_key and x ->> 'action' <> 'unchanged' and not pg_catalog.pg_has_role(current_user, p.pubowner, 'USAGE');
  if v_denied is not null then
    raise exception 'cannot swap "%" back: % may not alter publication(s) % that the swap changed', p_table_key, current_user, v_denied
      using errcode = 'insufficient_privilege',
            hint = 'Nothing was changed. Roll back as the publications'' owner (or a member of its role), or make postgres their owner again (alter publication … owner to postgres).';
  end if;
  for e in select x.value from partition_mgmt.migration_state s, jsonb_array_elements(s.publications) with ordinality x(value, n)
           where s.table_key = p_table_key order by x.n desc loop
    continue when e ->> 'action' = 'unchanged';
    v_pub := e ->> 'publication';
    v_add_legacy := format('alter publication %I add table only %s%s%s', v_pub, v_legacy, ' ' || (e ->> 'column_list'), ' where (' || (e ->> 'row_filter') || ')');
    if not exists (select from pg_catalog.pg_publication p where p.pubname = v_pub) then
      v_action := 'unchanged';
      v_detail := format('rollback: publication %I no longer exists, so there was nothing to restore', v_pub);
    elsif e ->> 'relation' = 'feed' then
      if v_feed is not null and exists (select from pg_catalog.pg_publication_rel pr join pg_catalog.pg_publication p on p.oid = pr.prpubid
                                        where p.pubname = v_pub and pr.prrelid = v_feed) then
        execute format('alter publication %I drop table %s', v_pub, v_feed);
      end if;
      v_action := 'restored';
      v_detail := format('rollback: the swap back took the change feed out of %I again, as before the migration; finish_rollback drops the table', v_pub);
    else
      if e ->> 'action' = 'replaced' and exists (select from pg_catalog.pg_publication_rel pr join pg_catalog.pg_publication p on p.oid = pr.prpubid
                                                 where p.pubname = v_pub and pr.prrelid = c.parent) then
        execute format('alter publication %I drop table %s', v_pub, c.parent);
      end if;
      if not exists (select from pg_catalog.pg_publication_rel pr join pg_catalog.pg_publication p on p.oid = pr.prpubid
                     where p.pubname = v_pub and pr.prrelid = v_legacy) then
        execute v_add_legacy;
      end if;
      v_action := 'restored';
      v_detail := format('rollback: the legacy table %s is in %I again%s, as before the migration%s', v_name, v_pub,
        case when e ->> 'column_list' is not null or e ->> 'row_filter' is not null
             then format(' with its%s%s', ' columns ' || (e ->> 'column_list'), ' and row filter ' || (e ->> 'row_filter')) else '' end,
        case when e ->> 'action' = 'replaced' then ' (the swap back took the partitioned table out)' else '' end);
    end if;
    insert into private.deploy_report (object, action, detail) values (e ->> 'object', v_action, v_detail)
    on conflict (object) do update set action = excluded.action, detail = excluded.detail, at = now();
    v_done := v_done || jsonb_build_object('publication', v_pub, 'object', e ->> 'object', 'action', v_action);
  end loop;
  update partition_mgmt.migration_state s set publications = '[]'::jsonb where s.table_key = p_table_key;
  return v_done;
end
$$;

-- The feed table, its RLS and grants, and the trigger function (one per managed table). Runs
-- before the swap's lock, in the swap's transaction; swap_publications puts the table in
-- supabase_realtime under the lock. A table of the feed's name that this migration did not create
-- is the project's own: the swap refuses rather than write into it (and finish_rollback would drop
-- only what the migration created).
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
  if to_regclass(v_feed) is not null
     and to_regclass(v_feed) is distinct from (select s.realtime_feed from partition_mgmt.migration_state s where s.table_key = p_table_key) then
    raise exception 'cannot swap "%": % already exists and is not the change feed this migration created', p_table_key, v_feed
      using errcode = 'duplicate_table',
            hint = format('The swap creates the Realtime change feed of %I.%I under that name. Rename your table (alter table %s rename to …), then swap again. Nothing was changed.',
                          c.source_schema, c.source_table, v_feed);
  end if;
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
  update partition_mgmt.migration_state s set realtime_feed = v_feed::regclass where s.table_key = p_table_key;
  update partition_mgmt.managed_tables m set realtime_feed = v_feed::regclass where m.table_key = p_table_key;
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
  -- its identity's sequence got the hosted default privileges on public too (setval by anon)
  execute format('revoke all on sequence %s from public, anon, authenticated', pg_catalog.pg_get_serial_sequence(v_feed, 'change_id'));
  insert into private.deploy_report (object, action, detail)
  values (format('table %s', v_feed), 'created',
          format('at the swap: the Realtime change feed of %I.%I, one row per changed row, kept an hour; select granted to authenticated and service_role, nothing to anon (nor on its identity sequence). finish_rollback drops it after a rollback; finalize keeps it', c.source_schema, c.source_table)),
         (format('policy company_isolation_changes on %s', v_feed), 'created',
          'at the swap: signed-in users read the change feed rows of their own companies only')
  on conflict (object) do update set action = excluded.action, detail = excluded.detail, at = now();
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

-- The copy's REPLICA IDENTITY ('d', 'f' or 'n'), on the partitioned parent and every leaf
-- (partition_mgmt.apply_replica_identity). Returns the leaves changed.
create or replace function partition_mgmt.set_copy_replica_identity(p_table_key text, p_ident "char")
returns integer
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
begin
  if p_ident in ('d', 'f', 'n') and p_ident <> (select relreplident from pg_catalog.pg_class where oid = c.parent) then
    perform partition_mgmt.run_ddl(format('alter table %s replica identity %s', c.parent, case p_ident when 'f' then 'full' when 'n' then 'nothing' else 'default' end));
  end if;
  return partition_mgmt.apply_replica_identity(p_table_key);
end
$$;

-- The legacy table's REPLICA IDENTITY (Realtime needs FULL to send old records) on the copy,
-- before it is filled; what the copy had is recorded for finish_rollback.
create or replace function partition_mgmt.carry_replica_identity(p_table_key text)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
begin
  update partition_mgmt.migration_state s set copy_replica_identity = (select relreplident from pg_catalog.pg_class where oid = c.parent)
  where s.table_key = p_table_key and s.copy_replica_identity is null;   -- kept from the first call
  return partition_mgmt.set_copy_replica_identity(p_table_key,
    (select relreplident from pg_catalog.pg_class where oid = partition_mgmt.legacy_table(p_table_key)));
end
$$;
