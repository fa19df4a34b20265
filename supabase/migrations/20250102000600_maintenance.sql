-- =============================================================================
-- Automated maintenance (the plan's 005): the tree keeps itself healthy on pg_cron.
--
-- Nightly: finish a rollback's cleanup, premake partitions up to the horizon, drain DEFAULT
-- partitions, retention when configured, analyze what changed, promote programs and sites that grew,
-- refresh analytics.mv_daily_metrics. Weekly: statistics on the parents. Daily: purge of
-- cron.job_run_details. pg_cron runs the statement partition_mgmt.maintenance_runner() returns, which
-- commits after every step; each step ends within its lock budget and maintenance_settings.step_seconds,
-- the run within its time budget. Every action is logged in maintenance_log, and health() turns the
-- state of the tree into findings.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

-- -----------------------------------------------------------------------------
-- Settings and log
-- -----------------------------------------------------------------------------

alter table partition_mgmt.managed_tables
  add column if not exists retention_months integer check (retention_months is null or retention_months >= 1),
  add column if not exists retention_action text not null default 'archive' check (retention_action in ('archive', 'drop'));
comment on column partition_mgmt.managed_tables.retention_months is
  'Leaves entirely older than this many months are archived or dropped by maintenance. NULL (default): keep everything.';
comment on column partition_mgmt.managed_tables.retention_action is
  'archive: detach into schema partitions_archive (kept, hidden from the Data API); drop: detach and drop.';

create table if not exists partition_mgmt.maintenance_settings (
  id                        boolean primary key default true check (id),
  lock_timeout              text not null default '500ms',
  size_threshold_bytes      bigint not null default 1073741824,
  stale_after               interval not null default '36 hours',
  cron_history_retention    interval not null default '7 days',
  move_batch_partitions     integer not null default 50 check (move_batch_partitions > 0),
  ddl_attempts              integer not null default 8 check (ddl_attempts between 1 and 50),
  promote_batch_rows        integer not null default 10000 check (promote_batch_rows between 100 and 1000000),
  -- a run stops taking new steps after this long (the next run goes on): pg_cron's CALL is one
  -- statement, and hosted Supabase ends any statement after 2 minutes
  max_run_seconds           integer not null default 90 check (max_run_seconds between 5 and 3600),
  promote_step_seconds      numeric not null default 5 check (promote_step_seconds > 0 and promote_step_seconds <= 60),
  step_seconds              numeric not null default 5 check (step_seconds between 1 and 60)
);
insert into partition_mgmt.maintenance_settings default values on conflict (id) do nothing;
comment on column partition_mgmt.maintenance_settings.step_seconds is
  'Seconds one maintenance step (one transaction of a run) may take before it stops taking new work and commits; the next step goes on.';
comment on table partition_mgmt.maintenance_settings is
  'Maintenance knobs: lock_timeout and attempts (with backoff) for DDL on hot tables, the partition size alert threshold (the plan''s 1 GB), when maintenance counts as stale, how long pg_cron run history is kept.';

create schema if not exists partitions_archive;
revoke all on schema partitions_archive from public, anon, authenticated;
comment on schema partitions_archive is 'Leaves detached by retention (archive mode). Not exposed through the Data API.';

create table if not exists partition_mgmt.archived_partitions (
  partition_schema  text not null,
  partition_name    text not null,
  table_key         text not null,
  program_id        uuid,
  site_id           uuid,
  range_start       timestamptz,
  range_end         timestamptz,
  archived_at       timestamptz not null default now(),
  primary key (partition_schema, partition_name)
);

create table if not exists partition_mgmt.maintenance_log (
  id                  bigint generated always as identity primary key,
  run_id              uuid not null,
  started_at          timestamptz not null default clock_timestamp(),
  finished_at         timestamptz,
  table_key           text,
  action              text not null,
  status              text not null default 'running' check (status in ('running', 'ok', 'error', 'skipped')),
  partitions_touched  integer not null default 0,
  rows_moved          bigint not null default 0,
  error               text,
  detail              jsonb
);
create index if not exists maintenance_log_started_idx on partition_mgmt.maintenance_log (started_at desc);
comment on table partition_mgmt.maintenance_log is 'One row per maintenance action: what ran, on which table, what it touched, and any error.';

create or replace function partition_mgmt.log_start(p_run_id uuid, p_table_key text, p_action text)
returns bigint
language sql
set search_path = ''
as $$
  insert into partition_mgmt.maintenance_log (run_id, table_key, action) values (p_run_id, p_table_key, p_action) returning id
$$;

create or replace function partition_mgmt.log_finish(p_id bigint, p_status text, p_partitions integer default 0,
  p_rows bigint default 0, p_error text default null, p_detail jsonb default null)
returns void
language sql
set search_path = ''
as $$
  update partition_mgmt.maintenance_log
     set finished_at = clock_timestamp(), status = p_status, partitions_touched = coalesce(p_partitions, 0),
         rows_moved = coalesce(p_rows, 0), error = p_error, detail = p_detail
   where id = p_id
$$;

-- -----------------------------------------------------------------------------
-- Steps (each is also callable on its own)
-- -----------------------------------------------------------------------------

-- Premake for every running program (and every program whose partitions the insert trigger
-- deferred), up to the horizon from now() (not from the newest data). In a sized tree the period
-- of each site with time partitions of its own first follows its rate of the last rate_window()
-- (unless pinned; the sizing rule of 20250102000200_partition_tree.sql): a site that got busier
-- gets shorter periods from the next one on; existing leaves are never split. Stops when this
-- transaction's DDL lock budget is spent (the flag partition_mgmt.budget_exhausted tells the caller
-- to commit and call again).
create or replace function partition_mgmt.premake_partitions(p_table_key text)
returns integer
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
  v_prog uuid;
  v_created integer := 0;
  r record;
  v_recent bigint;
  v_gran text;
begin
  if c.tree_shape = 'sized' then
    for r in
      select g.program_id, g.site_id, g.granularity from partition_mgmt.partition_registry g
      where g.table_key = p_table_key and g.level = 'site' and not g.is_default and not g.is_leaf
        and not exists (select from partition_mgmt.site_granularity x where x.table_key = p_table_key and x.site_id = g.site_id)
    loop
      execute format('select count(*) from %s where %I = %L and %I = %L and %I >= now() - %L::interval',
        v_parent, c.program_column, r.program_id, c.site_column, r.site_id, c.time_column, partition_mgmt.rate_window()) into v_recent;
      v_gran := partition_mgmt.granularity_for_rate(v_recent, partition_mgmt.rate_window(), c.target_rows_per_leaf, true);
      if v_gran is distinct from r.granularity then
        update partition_mgmt.partition_registry g set granularity = v_gran
        where g.table_key = p_table_key and g.level = 'site' and not g.is_default and g.site_id = r.site_id and g.program_id = r.program_id;
      end if;
    end loop;
  end if;
  for v_prog in
    select p.program_id from public.pilot_programs p
    where p.end_date > current_date
       or exists (select from partition_mgmt.creation_deferred d where d.table_key = p_table_key and d.program_id = p.program_id)
    order by p.start_date, p.program_id
  loop
    -- a program deleted since the loop started is skipped; one still there stays until we commit
    perform from public.pilot_programs where program_id = v_prog for key share;
    continue when not found;
    v_created := v_created + partition_mgmt.precreate_program_partitions(v_prog, p_table_key);
    exit when partition_mgmt.budget_spent();
    delete from partition_mgmt.creation_deferred d where d.table_key = p_table_key and d.program_id = v_prog;
  end loop;
  return v_created;
end
$$;

-- Rows waiting in DEFAULT partitions, by the partition they belong in (not the shared leaves of a
-- sized tree: see is_waiting_room).
create or replace function partition_mgmt.default_backlog(p_table_key text, p_limit integer default 1000)
returns table (default_partition text, program_id uuid, site_id uuid, period_start timestamptz, first_ts timestamptz, row_count bigint)
language plpgsql stable
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  r record;
begin
  for r in
    select g.partition_schema, g.partition_name from partition_mgmt.partition_registry g
    where g.table_key = p_table_key and g.is_default and partition_mgmt.is_waiting_room(c.tree_shape, g.level)
    order by g.partition_name
  loop
    return query execute format(
      'select %L::text, %I, %I, date_trunc(''month'', %I at time zone ''UTC'') at time zone ''UTC'', min(%I), count(*)
       from %I.%I group by 2, 3, 4 order by 2, 3, 4 limit %s',
      r.partition_schema || '.' || r.partition_name, c.program_column, c.site_column, c.time_column, c.time_column,
      r.partition_schema, r.partition_name, p_limit);
  end loop;
end
$$;

-- Moves rows out of DEFAULT partitions by creating the partitions they belong in (each creation
-- moves its rows in the same step). At most p_max_partitions creations per call: the procedure
-- commits between calls, so each batch is its own transaction.
create or replace function partition_mgmt.drain_defaults(p_table_key text, p_max_partitions integer default 50,
  out partitions_created integer, out rows_moved bigint, out remaining bigint)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  b record;
  v_before bigint;
  v_after bigint;
  v_total bigint;
begin
  partitions_created := 0;
  select coalesce(sum(x.row_count), 0) into v_total from partition_mgmt.default_backlog(p_table_key, 1000000) x;
  for b in select * from partition_mgmt.default_backlog(p_table_key, p_max_partitions) limit p_max_partitions loop
    exit when partition_mgmt.ddl_budget_exhausted();
    v_before := (select count(*) from partition_mgmt.partition_registry);
    -- the earliest row of the group: for a weekly site, later weeks come in the next rounds
    perform partition_mgmt.ensure_period_partition(p_table_key, b.program_id, b.site_id, b.first_ts);
    v_after := (select count(*) from partition_mgmt.partition_registry);
    partitions_created := partitions_created + (v_after - v_before)::integer;
  end loop;
  select coalesce(sum(x.row_count), 0) into remaining from partition_mgmt.default_backlog(p_table_key, 1000000) x;
  rows_moved := v_total - remaining;
end
$$;

-- Retention: leaves entirely older than retention_months are archived (detached into
-- partitions_archive, kept) or dropped, as configured. Nothing happens unless configured.
create or replace function partition_mgmt.apply_retention(p_table_key text)
returns integer
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_cutoff timestamptz;
  r record;
  v_parent text;
  v_count integer := 0;
begin
  if c.retention_months is null or partition_mgmt.migration_busy(p_table_key) then
    return 0;
  end if;
  v_cutoff := (date_trunc('month', now() at time zone 'UTC') - make_interval(months => c.retention_months)) at time zone 'UTC';
  for r in
    select g.* from partition_mgmt.partition_registry g
    where g.table_key = p_table_key and g.level = 'period' and not g.is_default and g.range_end <= v_cutoff
    order by g.range_start
  loop
    exit when partition_mgmt.ddl_budget_exhausted();   -- each detach keeps its locks until commit
    select format('%I.%I', n.nspname, p.relname) into v_parent
    from pg_catalog.pg_inherits i
    join pg_catalog.pg_class p on p.oid = i.inhparent join pg_catalog.pg_namespace n on n.oid = p.relnamespace
    where i.inhrelid = format('%I.%I', r.partition_schema, r.partition_name)::regclass;
    -- rows of other tables that reference these get their ON DELETE action, or keep the month
    -- (partition_mgmt.release_references, migration 0250)
    if not partition_mgmt.release_references(p_table_key, format('%I.%I', r.partition_schema, r.partition_name)::regclass) then
      continue;
    end if;
    -- the keys of rows leaving the table leave the key table too (and the list of rows written
    -- without a program)
    execute format('delete from partition_mgmt.observation_keys k using %I.%I t where k.table_key = %L and k.observation_id = t.%I',
      r.partition_schema, r.partition_name, p_table_key, c.id_column);
    execute format('delete from partition_mgmt.rows_without_program w using %I.%I t where w.table_key = %L and w.observation_id = t.%I',
      r.partition_schema, r.partition_name, p_table_key, c.id_column);
    -- the leaf's days leave the live table without a trigger seeing a row: their metrics are
    -- recomputed (analytics.metrics_dirty)
    if c.parent = to_regclass('public.petri_observations') and r.program_id is not null and r.site_id is not null then
      insert into analytics.metrics_dirty (program_id, site_id, day)
      select r.program_id, r.site_id, d::date
      from generate_series((r.range_start at time zone 'UTC')::date, ((r.range_end at time zone 'UTC') - interval '1 microsecond')::date, interval '1 day') d
      on conflict do nothing;
    end if;
    if c.retention_action = 'drop' then
      -- dropped while attached: a detached partition's foreign keys get triggers of their own on
      -- the referenced tables, and dropping those waits for ACCESS EXCLUSIVE on pilot_programs
      -- and sites, which every app statement reads
      perform partition_mgmt.run_ddl(format('drop table %I.%I', r.partition_schema, r.partition_name));
    else
      perform partition_mgmt.run_ddl(format('alter table %s detach partition %I.%I', v_parent, r.partition_schema, r.partition_name));
      execute format('alter table %I.%I set schema partitions_archive', r.partition_schema, r.partition_name);
      insert into partition_mgmt.archived_partitions (partition_schema, partition_name, table_key, program_id, site_id, range_start, range_end)
      values ('partitions_archive', r.partition_name, p_table_key, r.program_id, r.site_id, r.range_start, r.range_end)
      on conflict do nothing;
    end if;
    delete from partition_mgmt.partition_registry where partition_schema = r.partition_schema and partition_name = r.partition_name;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Retention inside the leaves that hold more than one period: the root's and the programs'
-- DEFAULT leaves of a sized tree (the rows of programs and sites too small for partitions of their
-- own) and sites kept in one leaf ('none'). Rows older than the cutoff are deleted, or with
-- retention_action 'archive' moved to partitions_archive.<prefix>_archived_rows, at most p_batch
-- rows per call (callers loop while it returns p_batch). Rows that a NO ACTION / RESTRICT carried
-- reference still points to stay (as retention keeps such a month); the other references get their
-- ON DELETE action from the delete triggers, and the key table follows through its trigger.
create or replace function partition_mgmt.apply_row_retention(p_table_key text, p_batch integer default 10000)
returns bigint
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_cutoff timestamptz;
  v_keep text := '';
  v_archive text := format('partitions_archive.%I', c.name_prefix || '_archived_rows');
  v_left bigint := p_batch;
  v_n bigint;
  v_mark text := '';
  r record;
  f record;
begin
  if c.retention_months is null or c.parent is null or partition_mgmt.migration_busy(p_table_key) then
    return 0;
  end if;
  -- rows deleted from a leaf pass no trigger of the live table: their groups are marked here
  if c.parent = to_regclass('public.petri_observations') then
    v_mark := format(', marked as (insert into analytics.metrics_dirty (program_id, site_id, day) select distinct g.%I, g.%I, (g.%I at time zone ''UTC'')::date from gone g on conflict do nothing)',
      c.program_column, c.site_column, c.time_column);
  end if;
  v_cutoff := (date_trunc('month', now() at time zone 'UTC') - make_interval(months => c.retention_months)) at time zone 'UTC';
  for f in select * from partition_mgmt.carried_references x where x.table_key = p_table_key and x.on_delete in ('a', 'r') loop
    v_keep := v_keep || format(' and not exists (select from %s ch where ch.%I = x.%I)', f.child_table, f.child_column, c.id_column);
  end loop;
  if c.retention_action = 'archive' and to_regclass(v_archive) is null then
    execute format('create table %s (like %s including defaults)', v_archive, c.parent);
    execute format('alter table %s add column archived_at timestamptz not null default now()', v_archive);
    execute format('revoke all on table %s from public, anon, authenticated', v_archive);
  end if;
  for r in
    select format('%I.%I', g.partition_schema, g.partition_name) as leaf from partition_mgmt.partition_registry g
    where g.table_key = p_table_key and g.is_leaf
      and ((g.is_default and g.level in ('program', 'site') and c.tree_shape = 'sized') or (g.level = 'site' and g.granularity = 'none'))
    order by 1
  loop
    exit when v_left <= 0;
    if c.retention_action = 'archive' then
      execute format('with gone as (delete from %1$s t where t.ctid = any (array(select x.ctid from %1$s x where x.%2$I < %3$L%5$s limit %4$s)) returning t.*)%8$s
                      insert into %6$s (%7$s) select %7$s from gone',
        r.leaf, c.time_column, v_cutoff, v_left, v_keep, v_archive, partition_mgmt.column_list(c.parent), v_mark);
    else
      execute format('with gone as (delete from %1$s t where t.ctid = any (array(select x.ctid from %1$s x where x.%2$I < %3$L%5$s limit %4$s)) returning t.*)%6$s
                      select count(*) from gone',
        r.leaf, c.time_column, v_cutoff, v_left, v_keep, v_mark) into v_n;
    end if;
    if c.retention_action = 'archive' then
      get diagnostics v_n = row_count;
    end if;
    v_left := v_left - v_n;
  end loop;
  return p_batch - v_left;
end
$$;

-- Rows changed in p_rel since its last analyze beyond which it is analyzed again: autovacuum's own
-- threshold (the table's storage parameters first, then the server's settings), 0 when autovacuum
-- does not run on it.

create or replace function partition_mgmt.analyze_threshold(p_rel regclass)
returns double precision
language sql stable
set search_path = ''
as $$
  select case
    when not pg_catalog.current_setting('autovacuum')::boolean
      or coalesce((select o.option_value from pg_catalog.pg_options_to_table(k.reloptions) o
                   where o.option_name = 'autovacuum_enabled')::boolean, true) = false then 0
    else coalesce((select o.option_value from pg_catalog.pg_options_to_table(k.reloptions) o
                   where o.option_name = 'autovacuum_analyze_threshold')::double precision,
                  pg_catalog.current_setting('autovacuum_analyze_threshold')::double precision)
       + coalesce((select o.option_value from pg_catalog.pg_options_to_table(k.reloptions) o
                   where o.option_name = 'autovacuum_analyze_scale_factor')::double precision,
                  pg_catalog.current_setting('autovacuum_analyze_scale_factor')::double precision)
         * greatest(k.reltuples, 0)
    end
  from pg_catalog.pg_class k
  where k.oid = p_rel
$$;
comment on function partition_mgmt.analyze_threshold(regclass) is
  'Rows changed since the last analyze beyond which maintenance analyzes the leaf: autovacuum''s analyze threshold (storage parameters, then server settings); 0 where autovacuum is off.';

revoke execute on function partition_mgmt.analyze_threshold(regclass) from public, anon, authenticated;

-- Analyze leaves (of one table, or of all) that autovacuum would analyze and has not yet, or never
-- analyzed (and, with p_include_parents, the partitioned parents, whose statistics autovacuum
-- never gathers), within this transaction's lock budget. Returns tables analyzed.
create or replace function partition_mgmt.analyze_all_partitions(p_include_parents boolean default false, p_table_key text default null)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v_count integer := 0;
begin
  for r in
    select g.partition_schema, g.partition_name
    from partition_mgmt.partition_registry g
    join pg_catalog.pg_stat_all_tables s on s.relid = to_regclass(format('%I.%I', g.partition_schema, g.partition_name))
    where g.is_leaf and (p_table_key is null or g.table_key = p_table_key)
      and s.n_live_tup + s.n_dead_tup + s.n_mod_since_analyze > 0
      and (coalesce(s.last_analyze, s.last_autoanalyze) is null
           or s.n_mod_since_analyze > partition_mgmt.analyze_threshold(s.relid))
    order by 1, 2
  loop
    -- each ANALYZE keeps its locks until commit: stop within the lock budget (maintenance commits
    -- and calls again)
    exit when partition_mgmt.ddl_budget_exhausted();
    execute format('analyze %I.%I', r.partition_schema, r.partition_name);
    v_count := v_count + 1;
  end loop;
  if p_include_parents and not partition_mgmt.budget_spent() then
    for r in select parent from partition_mgmt.managed_tables where parent is not null and (p_table_key is null or table_key = p_table_key) loop
      execute format('analyze %s', r.parent);
      v_count := v_count + 1;
    end loop;
  end if;
  return v_count;
end
$$;

-- Drops leaves that are empty, entirely in the past by more than p_days, and belong to an ended
-- program. Never the current or a future period, never a DEFAULT. Returns the partitions dropped.
create or replace function partition_mgmt.cleanup_empty_partitions(p_days integer default 30)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v_empty boolean;
  v_count integer := 0;
begin
  if p_days is null or p_days < 0 then
    raise exception 'p_days must be a non-negative number of days, got %', p_days;
  end if;
  for r in
    select g.* from partition_mgmt.partition_registry g
    join public.pilot_programs p on p.program_id = g.program_id
    where g.level = 'period' and g.is_leaf and not g.is_default
      and g.range_end < now() - make_interval(days => p_days)
      and g.range_end <= date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'
      and p.end_date < current_date
      and not partition_mgmt.migration_busy(g.table_key)
    order by g.table_key, g.range_start
  loop
    exit when partition_mgmt.ddl_budget_exhausted();   -- each drop keeps its locks until commit
    execute format('select not exists (select from %I.%I)', r.partition_schema, r.partition_name) into v_empty;
    continue when not v_empty;
    -- dropped while attached (see apply_retention): no lock on the tables its foreign keys reference
    perform partition_mgmt.run_ddl(format('drop table %I.%I', r.partition_schema, r.partition_name));
    delete from partition_mgmt.partition_registry where partition_schema = r.partition_schema and partition_name = r.partition_name;
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- One bounded piece of the metrics' upkeep (analytics.maintain_daily_metrics): the groups written
-- since the last run, for at most this step's step_seconds.
create or replace function partition_mgmt.refresh_metrics(out mode text, out groups integer, out remaining bigint, out more boolean)
language plpgsql
set search_path = ''
as $$
begin
  if to_regprocedure('analytics.maintain_daily_metrics(numeric)') is null then
    mode := 'absent';
    more := false;
    return;
  end if;
  select x.mode, x.groups, x.remaining, x.more into mode, groups, remaining, more
  from analytics.maintain_daily_metrics((select step_seconds from partition_mgmt.maintenance_settings)) x;
end
$$;

create or replace function partition_mgmt.purge_cron_history()
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_count bigint;
begin
  if to_regclass('cron.job_run_details') is null then
    return 0;
  end if;
  -- (pg_cron's tables are named at run time: the function stays valid, and plpgsql_check quiet,
  -- in a database without pg_cron)
  execute format('delete from %I.job_run_details where end_time < now() - $1', 'cron')
    using (select cron_history_retention from partition_mgmt.maintenance_settings);
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

create or replace function partition_mgmt.weekly_statistics()
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_run uuid := gen_random_uuid();
  v_log bigint := partition_mgmt.log_start(v_run, null, 'weekly_statistics');
  v_n integer;
begin
  v_n := partition_mgmt.analyze_all_partitions(true);
  perform partition_mgmt.log_finish(v_log, 'ok', v_n);
  return v_n;
end
$$;

-- Why the refresh should not start now (null: it may): the last successful one took longer than
-- what is left of this statement's statement_timeout (a run is one statement: its COMMITs do not
-- restart the timer).
create or replace function partition_mgmt.refresh_would_time_out()
returns text
language sql stable
set search_path = ''
as $$
  select format('analytics.mv_daily_metrics was not refreshed: the last refresh took %s s and %s s are left before statement_timeout (%s) '
                'ends this run. Refresh it with select analytics.refresh_daily_metrics(); in a session with a longer statement_timeout, '
                'or give the nightly job one (alter role ... set statement_timeout, for the role pg_cron runs it as).',
                round(l.secs::numeric, 1), greatest(round(x.left_secs::numeric, 1), 0), pg_catalog.current_setting('statement_timeout'))
  from (select extract(epoch from g.finished_at - g.started_at) as secs from partition_mgmt.maintenance_log g
        where g.action = 'refresh_metrics' and g.status = 'ok' and g.finished_at is not null
        order by g.id desc limit 1) l,
       (select nullif(extract(epoch from pg_catalog.current_setting('statement_timeout')::interval), 0)
               - extract(epoch from clock_timestamp() - statement_timestamp()) as left_secs) x
  where x.left_secs is not null and l.secs * 1.2 > x.left_secs
$$;
comment on function partition_mgmt.refresh_would_time_out() is
  'Null when the metrics refresh may start now; otherwise why not: the last refresh took longer than what is left of the statement_timeout.';
revoke execute on function partition_mgmt.refresh_would_time_out() from public, anon, authenticated;

-- -----------------------------------------------------------------------------
-- One table's nightly work, each step logged; a failing step is logged and the next runs.
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.maintain_step(p_run_id uuid, p_table_key text, p_action text)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_log bigint := partition_mgmt.log_start(p_run_id, p_table_key, p_action);
  v_n integer := 0;
  v_drain record;
  v_promo record;
  v_rows bigint;
  v_text text;
  v_metrics record;
  v_more boolean := false;
begin
  begin
    perform set_config('partition_mgmt.lock_timeout', (select lock_timeout from partition_mgmt.maintenance_settings), true);
    perform set_config('partition_mgmt.ddl_attempts', (select ddl_attempts::text from partition_mgmt.maintenance_settings), true);
    -- this step's time: ddl_budget_exhausted() ends it there, like a spent lock budget (the run
    -- commits and goes on)
    perform set_config('partition_mgmt.step_deadline',
      (clock_timestamp() + make_interval(secs => (select step_seconds from partition_mgmt.maintenance_settings)))::text, true);
    case p_action
      when 'premake' then
        v_n := partition_mgmt.premake_partitions(p_table_key);
        perform partition_mgmt.log_finish(v_log, 'ok', v_n, 0, null,
          case when partition_mgmt.budget_spent() then jsonb_build_object('more', true) end);
        -- this step's budget (locks, or time) is spent: commit, then the next round goes on
        v_more := partition_mgmt.budget_spent();
      when 'finish_rollback' then
        -- the copy of a rolled-back migration nobody emptied yet
        v_text := partition_mgmt.finish_rollback(p_table_key);
        perform partition_mgmt.log_finish(v_log, 'ok', 0, 0, null, jsonb_build_object('message', v_text));
      when 'promote' then
        select * into v_promo from partition_mgmt.promote_step(p_table_key,
          (select promote_batch_rows from partition_mgmt.maintenance_settings), (select promote_step_seconds from partition_mgmt.maintenance_settings));
        perform partition_mgmt.log_finish(v_log, 'ok', case when v_promo.action = 'cutover' then 1 else 0 end, 0, null,
          jsonb_build_object('action', v_promo.action, 'detail', v_promo.detail));
        v_more := v_promo.more;
      when 'drain_defaults' then
        select * into v_drain from partition_mgmt.drain_defaults(p_table_key,
          (select move_batch_partitions from partition_mgmt.maintenance_settings));
        perform partition_mgmt.log_finish(v_log, 'ok', v_drain.partitions_created, v_drain.rows_moved, null,
          jsonb_build_object('remaining', v_drain.remaining));
        v_more := v_drain.remaining > 0 and v_drain.partitions_created > 0;   -- more batches to do
      when 'retention' then
        -- the Realtime change feed the swap created keeps an hour (Realtime reads the WAL, not the
        -- table); only that table, never one of the project's with the same name
        if exists (select from partition_mgmt.managed_tables m join pg_catalog.pg_class k on k.oid = m.realtime_feed
                   where m.table_key = p_table_key) then
          execute format('delete from %s where changed_at < now() - interval ''1 hour''',
            (select m.realtime_feed from partition_mgmt.managed_tables m where m.table_key = p_table_key));
        end if;
        v_n := partition_mgmt.apply_retention(p_table_key);
        v_rows := partition_mgmt.apply_row_retention(p_table_key, (select promote_batch_rows from partition_mgmt.maintenance_settings));
        perform partition_mgmt.log_finish(v_log, 'ok', v_n, v_rows);
        v_more := partition_mgmt.budget_spent() or v_rows >= (select promote_batch_rows from partition_mgmt.maintenance_settings);
      when 'analyze' then
        v_n := partition_mgmt.analyze_all_partitions(false, p_table_key);
        perform partition_mgmt.log_finish(v_log, 'ok', v_n);
        v_more := partition_mgmt.budget_spent();
      when 'refresh_metrics' then
        -- one statement that cannot stop half-way: not started when the last one would not end
        -- before statement_timeout cancels the whole run
        v_text := partition_mgmt.refresh_would_time_out();
        if v_text is not null then
          -- an error, so that health() reports it: the metrics are not fresh
          perform partition_mgmt.log_finish(v_log, 'error', 0, 0, v_text, jsonb_build_object('skipped', true));
        else
          select * into v_metrics from partition_mgmt.refresh_metrics();
          perform partition_mgmt.log_finish(v_log, 'ok', 0, 0, null,
            jsonb_build_object('mode', v_metrics.mode, 'groups', v_metrics.groups, 'remaining', v_metrics.remaining));
          v_more := v_metrics.more;
        end if;
      else
        raise exception 'unknown maintenance action "%"', p_action;
    end case;
  exception when others then
    perform partition_mgmt.log_finish(v_log, 'error', 0, 0, sqlerrm,
      jsonb_build_object('sqlstate', sqlstate));
  end;
  -- (the deadline is this step's only: later statements of the caller's transaction are not bound by it)
  perform set_config('partition_mgmt.step_deadline', '', true);
  return v_more;
end
$$;

-- When a run stops taking new steps: after max_run_seconds, and well before the session's
-- statement_timeout (which would cancel the whole run).
create or replace function partition_mgmt.maintenance_deadline()
returns timestamptz
language sql volatile
set search_path = ''
as $$
  select clock_timestamp() + make_interval(secs => least(
    (select max_run_seconds from partition_mgmt.maintenance_settings)::numeric,
    coalesce(nullif(extract(epoch from current_setting('statement_timeout')::interval), 0) * 0.75, 1e9)))
$$;

create or replace function partition_mgmt.maintenance_lock_key()
returns bigint
language sql immutable
set search_path = ''
as $$ select hashtextextended('partition_mgmt:maintenance', 0) $$;

-- The nightly run for pg_cron commits after every step (and every batch of the default drain and
-- of a promotion's copy). A procedure that commits cannot carry SET search_path (Supabase's
-- advisor flags it, lint 0011), so the run is: maintenance_begin() takes the session's lock and
-- records the run, each maintenance_continue() does the next step in the caller's transaction,
-- and a DO block (maintenance_runner() returns it; the pg_cron job runs it) commits between them.
-- A second concurrent run finds the lock taken, logs 'skipped' and does nothing.
create table if not exists partition_mgmt.maintenance_runs (
  run_id      uuid primary key,
  tables      text[] not null,
  table_idx   integer not null default 1,
  action_idx  integer not null default 1,
  rounds      integer not null default 0,
  deadline    timestamptz not null,
  log_id      bigint not null,
  unfinished  boolean not null default false,
  backend_pid integer not null default pg_catalog.pg_backend_pid(),
  started_at  timestamptz not null default now()
);
comment on table partition_mgmt.maintenance_runs is
  'Maintenance runs in progress (one row per run, gone when it ends): the table and step it is at. A row whose backend_pid is gone is a run that was interrupted; the next run removes it.';
revoke all on partition_mgmt.maintenance_runs from public, anon, authenticated;
grant select on partition_mgmt.maintenance_runs to service_role;

-- The steps of a run, in order, for each managed table.
create or replace function partition_mgmt.maintenance_actions()
returns text[]
language sql immutable
set search_path = ''
as $$ select array['finish_rollback', 'premake', 'drain_defaults', 'retention', 'analyze', 'promote'] $$;

-- Starts a run of p_table_key (null: every managed table) in this session; null when another run
-- holds the lock (logged as skipped).
create or replace function partition_mgmt.maintenance_begin(p_table_key text default null)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_run uuid := gen_random_uuid();
  v_log bigint;
begin
  v_log := partition_mgmt.log_start(v_run, p_table_key, 'run');
  -- session-level: held across the run's commits, released by its end or by the session's
  if not pg_catalog.pg_try_advisory_lock(partition_mgmt.maintenance_lock_key()) then
    perform partition_mgmt.log_finish(v_log, 'skipped', 0, 0, null, jsonb_build_object('reason', 'another maintenance run is in progress'));
    return null;
  end if;
  -- runs of sessions that are gone (interrupted) leave nothing behind
  delete from partition_mgmt.maintenance_runs r
  where not exists (select from pg_catalog.pg_stat_activity a where a.pid = r.backend_pid);
  insert into partition_mgmt.maintenance_runs (run_id, tables, deadline, log_id)
  values (v_run,
          coalesce((select array_agg(m.table_key order by m.table_key) from partition_mgmt.managed_tables m
                    where m.parent is not null and (p_table_key is null or m.table_key = p_table_key)), '{}'::text[]),
          partition_mgmt.maintenance_deadline(), v_log);
  return v_run;
end
$$;

-- The next step of run p_run in the caller's transaction. Returns false when the run has ended
-- (then it has refreshed the metrics, logged its end and released the lock).
create or replace function partition_mgmt.maintenance_continue(p_run uuid)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  r partition_mgmt.maintenance_runs;
  v_actions text[] := partition_mgmt.maintenance_actions();
  v_table text;
  v_action text;
  v_more boolean;
  v_did boolean;
begin
  select * into r from partition_mgmt.maintenance_runs x where x.run_id = p_run for update;
  if not found then
    return false;
  end if;
  if r.backend_pid <> pg_catalog.pg_backend_pid() then
    raise exception 'maintenance run % belongs to session %, not to this one (%)', p_run, r.backend_pid, pg_catalog.pg_backend_pid()
      using hint = 'A run is continued by the session that began it: it holds the maintenance lock.';
  end if;
  loop
    if r.table_idx > coalesce(array_length(r.tables, 1), 0) then
      -- the metrics last, a bounded step per transaction while changed groups are left and time is
      if not r.unfinished and partition_mgmt.maintain_step(p_run, null, 'refresh_metrics') then
        if clock_timestamp() <= r.deadline then
          return true;   -- the caller commits this step and calls again
        end if;
        r.unfinished := true;
      end if;
      perform partition_mgmt.log_finish(r.log_id, case when exists (select from partition_mgmt.maintenance_log
        where run_id = p_run and status = 'error') then 'error' else 'ok' end, 0, 0, null,
        case when r.unfinished then jsonb_build_object('unfinished', true, 'reason',
          format('the run''s time budget (max_run_seconds, or 3/4 of statement_timeout %s) was spent; the next run goes on', current_setting('statement_timeout'))) end);
      delete from partition_mgmt.maintenance_runs x where x.run_id = p_run;
      perform pg_catalog.pg_advisory_unlock(partition_mgmt.maintenance_lock_key());
      return false;
    end if;
    if clock_timestamp() > r.deadline then
      r.unfinished := true;
      r.table_idx := coalesce(array_length(r.tables, 1), 0) + 1;
      continue;
    end if;
    v_table := r.tables[r.table_idx];
    v_action := v_actions[r.action_idx];
    v_did := not (v_action = 'finish_rollback' and partition_mgmt.migration_phase(v_table) <> 'rolled_back');
    v_more := v_did and partition_mgmt.maintain_step(p_run, v_table, v_action);
    r.rounds := r.rounds + 1;
    if not v_more or r.rounds >= 1000 then
      r.rounds := 0;
      r.action_idx := r.action_idx + 1;
      if r.action_idx > array_length(v_actions, 1) then
        r.action_idx := 1;
        r.table_idx := r.table_idx + 1;
      end if;
    end if;
    update partition_mgmt.maintenance_runs x
    set table_idx = r.table_idx, action_idx = r.action_idx, rounds = r.rounds, unfinished = r.unfinished
    where x.run_id = p_run;
    if v_did then
      return true;   -- the caller commits this step
    end if;
  end loop;
end
$$;

-- The statement that runs maintenance now, committing after every step (pg_cron's nightly job
-- runs it):  select partition_mgmt.maintenance_runner() \gexec
create or replace function partition_mgmt.maintenance_runner(p_table_key text default null)
returns text
language sql immutable
set search_path = ''
as $$
  select format('do $run$ declare v_run uuid := partition_mgmt.maintenance_begin(%s); begin commit; '
                'while v_run is not null and partition_mgmt.maintenance_continue(v_run) loop commit; end loop; end $run$',
                coalesce(quote_literal(p_table_key), 'null'))
$$;

-- The plan's entry point (`select partition_mgmt.schedule_maintenance();`): the same work in the
-- caller's transaction. Safe at any time and concurrently: a second run skips. Returns the run id.
create or replace function partition_mgmt.schedule_maintenance(p_table_key text default null)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_run uuid := gen_random_uuid();
  v_table text;
  v_action text;
  v_log bigint;
  v_rounds integer;
  v_deadline timestamptz := partition_mgmt.maintenance_deadline();
begin
  v_log := partition_mgmt.log_start(v_run, p_table_key, 'run');
  if not pg_try_advisory_xact_lock(partition_mgmt.maintenance_lock_key()) then
    perform partition_mgmt.log_finish(v_log, 'skipped', 0, 0, null, jsonb_build_object('reason', 'another maintenance run is in progress'));
    return v_run;
  end if;
  for v_table in select table_key from partition_mgmt.managed_tables
                 where parent is not null and (p_table_key is null or table_key = p_table_key) order by table_key loop
    -- (no promotion here: it copies rows in batches that must commit one by one; the runner does it)
    foreach v_action in array array_remove(partition_mgmt.maintenance_actions(), 'promote') loop
      continue when v_action = 'finish_rollback' and partition_mgmt.migration_phase(v_table) <> 'rolled_back';
      v_rounds := 0;
      -- (one transaction: a step that spent the lock budget is not repeated; the runner commits
      -- and goes on)
      while clock_timestamp() < v_deadline and partition_mgmt.maintain_step(v_run, v_table, v_action) and v_rounds < 1000
            and not partition_mgmt.budget_spent() loop
        v_rounds := v_rounds + 1;
      end loop;
    end loop;
  end loop;
  while partition_mgmt.maintain_step(v_run, null, 'refresh_metrics') and clock_timestamp() < v_deadline loop
  end loop;
  perform partition_mgmt.log_finish(v_log, case when exists (select from partition_mgmt.maintenance_log
    where run_id = v_run and status = 'error') then 'error' else 'ok' end);
  return v_run;
end
$$;

-- -----------------------------------------------------------------------------
-- Read replicas: their lag as the primary sees it, and what the read function saw on them
-- -----------------------------------------------------------------------------
-- pg_stat_database_conflicts counts only on the standby, and only the edge functions know a
-- replica's URL (the secret DB_REPLICA_URL), so the read function (functions/_shared/replica.ts)
-- reports what it measured there: its replay position and lag, the standby's conflict counters,
-- how many reads it served and how many fell back to the primary. health() reads this beside
-- pg_stat_replication and the physical slots; "since the last run" counts from the last
-- maintenance run that finished ok.

create table if not exists partition_mgmt.replica_status (
  replica               text primary key,
  observed_at           timestamptz not null default now(),
  replay_lsn            pg_lsn,
  replay_lag_ms         bigint,
  conflicts             jsonb not null default '{}',
  conflicts_total       bigint not null default 0,
  replica_reads         bigint not null default 0,
  fallbacks             bigint not null default 0,
  last_fallback_at      timestamptz,
  last_fallback_reason  text,
  conflicts_at_run      bigint not null default 0,
  fallbacks_at_run      bigint not null default 0,
  run_at                timestamptz
);
comment on table partition_mgmt.replica_status is
  'One row per read replica the read function routes to (named host:port/database of DB_REPLICA_URL): what it last measured there (replay position, lag, the standby''s pg_stat_database_conflicts), reads served and fallbacks to the primary; *_at_run: the counters when the last maintenance run finished.';

-- Called by the read function on the primary, at most every few seconds per isolate: the lag and
-- conflict counters as measured now, the reads and fallbacks since its previous call.
create or replace function partition_mgmt.record_replica_routing(
  p_replica text, p_replay_lsn pg_lsn, p_replay_lag_ms bigint, p_conflicts jsonb,
  p_replica_reads bigint, p_fallbacks bigint, p_last_fallback_reason text)
returns void
language sql
set search_path = ''
as $$
  insert into partition_mgmt.replica_status as s (replica, observed_at, replay_lsn, replay_lag_ms, conflicts, conflicts_total,
                                                  replica_reads, fallbacks, last_fallback_at, last_fallback_reason)
  values (p_replica, now(), p_replay_lsn, p_replay_lag_ms, coalesce(p_conflicts, '{}'),
          (select coalesce(sum(c.value::bigint), 0) from jsonb_each_text(coalesce(p_conflicts, '{}')) c where c.key like 'confl\_%'),
          greatest(p_replica_reads, 0), greatest(p_fallbacks, 0),
          case when p_fallbacks > 0 then now() end, case when p_fallbacks > 0 then p_last_fallback_reason end)
  on conflict (replica) do update set
    observed_at = excluded.observed_at,
    replay_lsn = coalesce(excluded.replay_lsn, s.replay_lsn),
    replay_lag_ms = excluded.replay_lag_ms,
    -- a replica that could not be reached reports no counters: keep the last ones
    conflicts = case when p_conflicts is null then s.conflicts else excluded.conflicts end,
    conflicts_total = case when p_conflicts is null then s.conflicts_total else excluded.conflicts_total end,
    replica_reads = s.replica_reads + excluded.replica_reads,
    fallbacks = s.fallbacks + excluded.fallbacks,
    last_fallback_at = coalesce(excluded.last_fallback_at, s.last_fallback_at),
    last_fallback_reason = coalesce(excluded.last_fallback_reason, s.last_fallback_reason)
$$;

-- A maintenance run that finished ok starts the next "since the last run" count.
create or replace function partition_mgmt.replica_status_mark_run()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  update partition_mgmt.replica_status
     set conflicts_at_run = conflicts_total, fallbacks_at_run = fallbacks, run_at = new.finished_at;
  return null;
end
$$;

drop trigger if exists replica_status_mark_run on partition_mgmt.maintenance_log;
create trigger replica_status_mark_run
  after update of status on partition_mgmt.maintenance_log
  for each row when (new.action = 'run' and new.status = 'ok' and old.status is distinct from 'ok')
  execute function partition_mgmt.replica_status_mark_run();

-- Every physical standby of this primary: the streaming ones from pg_stat_replication (write,
-- flush and replay lag), a stopped one from its slot (how much WAL it has yet to replay).
-- Logical walsenders (Realtime) and base backups in progress are not replicas.
create or replace function partition_mgmt.replica_lag()
returns table (replica text, state text, write_lag interval, flush_lag interval, replay_lag interval,
               bytes_behind bigint, slot_name text)
language sql stable
-- pg_stat_replication shows the lag columns only to pg_read_all_stats, which postgres is and
-- service_role (health() through the admin function) is not
security definer
set search_path = ''
as $$
  select coalesce(r.application_name, sl.slot_name::text),
         coalesce(r.state, case when sl.active then 'connected' else 'stopped' end),
         r.write_lag, r.flush_lag, r.replay_lag,
         pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), coalesce(r.replay_lsn, sl.restart_lsn))::bigint,
         sl.slot_name::text
  from (select * from pg_catalog.pg_stat_replication x
        where x.state is distinct from 'backup'
          and not exists (select from pg_catalog.pg_replication_slots l where l.slot_type = 'logical' and l.active_pid = x.pid)) r
  full join (select * from pg_catalog.pg_replication_slots p where p.slot_type = 'physical') sl on sl.active_pid = r.pid
  order by 1
$$;
comment on function partition_mgmt.replica_lag() is
  'Each physical standby: its state, write/flush/replay lag (pg_stat_replication) and the WAL bytes it has yet to replay; a stopped one by its slot.';

-- What the read function saw on each replica, with the counts since the last maintenance run.
create or replace view partition_mgmt.replica_routing with (security_invoker = true) as
  select s.replica, s.observed_at, s.replay_lsn, s.replay_lag_ms, s.conflicts,
         -- a standby that restarted counts from zero again
         case when s.conflicts_total >= s.conflicts_at_run then s.conflicts_total - s.conflicts_at_run else s.conflicts_total end as conflicts_since_last_run,
         s.replica_reads, s.fallbacks, s.fallbacks - s.fallbacks_at_run as fallbacks_since_last_run,
         s.last_fallback_at, s.last_fallback_reason, s.run_at as last_run_at
  from partition_mgmt.replica_status s;
comment on view partition_mgmt.replica_routing is
  'Per read replica: the read function''s last measurement, recovery conflicts and fallbacks to the primary since the last maintenance run.';

-- -----------------------------------------------------------------------------
-- Health: one row per finding, nothing on a healthy tree
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.health()
returns table (severity text, finding text, table_key text, detail text)
language plpgsql stable
set search_path = ''
as $$
declare
  s partition_mgmt.maintenance_settings;
  m record;
  v_n bigint;
  v_detail text;
  v_last timestamptz;
begin
  select * into s from partition_mgmt.maintenance_settings;
  for m in select * from partition_mgmt.managed_tables where parent is not null order by table_key loop
   begin
    select coalesce(sum(b.row_count), 0), string_agg(distinct b.default_partition, ', ')
      into v_n, v_detail from partition_mgmt.default_backlog(m.table_key, 100000) b;
    if v_n > 0 then
      return query select 'warning', 'rows in default partitions', m.table_key,
        format('%s row(s) in %s; run partition_mgmt.schedule_maintenance() to move them', v_n, left(v_detail, 300));
    end if;

    select count(*), string_agg(format('program %s site %s', x.program_id, x.site_id), '; ')
      into v_n, v_detail
    from (select s2.program_id, s2.site_id from public.sites s2
          join public.pilot_programs p on p.program_id = s2.program_id
          where p.end_date >= ((date_trunc('month', now() at time zone 'UTC') + interval '1 month'))::date
            and partition_mgmt.site_granularity_for(m.table_key, s2.site_id) <> 'none'
            -- (in a sized tree, only the sites with time partitions of their own: the others share a leaf)
            and (m.tree_shape = 'literal' or exists (select from partition_mgmt.partition_registry o
                 where o.table_key = m.table_key and o.level = 'site' and not o.is_default and not o.is_leaf and o.site_id = s2.site_id))
            and not exists (
              select from partition_mgmt.partition_registry r
              where r.table_key = m.table_key and r.program_id = s2.program_id and r.site_id = s2.site_id
                and r.is_leaf and not r.is_default
                and (r.range_start is null or (r.range_start <= (date_trunc('month', now() at time zone 'UTC') + interval '1 month') at time zone 'UTC'
                                                and r.range_end > (date_trunc('month', now() at time zone 'UTC') + interval '1 month') at time zone 'UTC')))) x;
    if v_n > 0 then
      return query select 'warning', 'next period partitions missing', m.table_key,
        format('%s running site(s) have no partition for next month: %s', v_n, left(v_detail, 300));
    end if;

    return query
      select 'warning', 'partition over size threshold', m.table_key,
             format('%s is %s (threshold %s): consider weekly granularity for site %s',
                    v.partition_name, pg_catalog.pg_size_pretty(v.size_bytes), pg_catalog.pg_size_pretty(s.size_threshold_bytes), v.site_id)
      from partition_mgmt.v_partition_stats v
      where v.table_key = m.table_key and v.is_leaf and v.size_bytes > s.size_threshold_bytes;

    return query
      select 'warning', 'leaf budget exceeded', b.table_key, b.advice
      from partition_mgmt.leaf_budget_report() b where b.table_key = m.table_key and b.over_budget;

    -- statements without the partition keys that fit in the lock table at once: always said
    return query
      select case when l.status = 'ok' then 'info' else 'warning' end,
             case when l.status = 'ok' then 'lock budget' else 'lock budget exceeded' end, l.table_key,
             format('%s statements without the partition keys fit in the lock table at once (each locks %s of %s slots; minimum %s)%s',
                    l.keyless_at_once, l.keyless_locks, l.lock_capacity, l.minimum, case when l.status = 'ok' then '' else ': ' || l.advice end)
      from partition_mgmt.lock_budget() l where l.table_key = m.table_key;

    return query
      select 'warning', 'partition creation deferred', d.table_key,
             format('%s program(s)/site(s) without their partitions since %s (the last: program %s site %s, %s); maintenance creates them',
                    count(*), min(d.at), (array_agg(d.program_id order by d.at desc))[1], coalesce((array_agg(d.site_id order by d.at desc))[1]::text, '-'),
                    (array_agg(d.reason order by d.at desc))[1])
      from partition_mgmt.creation_deferred d where d.table_key = m.table_key group by d.table_key;

    return query
      select 'warning', 'promotion stalled', p.table_key,
             format('the promotion of %s %s started %s ago (%s of about %s rows copied, phase %s): let the nightly job go on (or run select partition_mgmt.maintenance_runner() \gexec), or partition_mgmt.abort_promotion(%L)',
                    p.level, coalesce(p.site_id, p.program_id), date_trunc('second', now() - p.started_at), p.rows_copied, p.rows_total, p.phase, p.table_key)
      from partition_mgmt.promotions p where p.table_key = m.table_key and p.updated_at < now() - s.stale_after;

    -- the last promote step found a program or site to promote that the lock budget does not allow
    return query
      select 'warning', 'promotion held', l.table_key, format('%s (maintenance at %s)', l.detail ->> 'detail', date_trunc('second', l.started_at))
      from (select x.table_key, x.detail, x.started_at from partition_mgmt.maintenance_log x
            where x.table_key = m.table_key and x.action = 'promote' and x.status = 'ok'
            order by x.started_at desc, x.id desc limit 1) l
      where l.detail ->> 'action' = 'held';
   exception when others then
    -- one broken table must not hide the findings of the others
    return query select 'error', 'health check failed', m.table_key, format('%s (%s)', sqlerrm, sqlstate);
   end;
  end loop;

  -- what the push left to run online (migration 20250102000350)
  return query
    select 'warning', 'setup pending', t.table_key,
           format('setup step %s: %s (%s). Run npm run admin -- setup, or select partition_mgmt.setup_runner() \gexec in psql', t.task, t.progress, t.detail)
    from partition_mgmt.setup_tasks() t where not t.done;

  select max(l.finished_at) into v_last from partition_mgmt.maintenance_log l
  where l.action = 'run' and l.status = 'ok';
  if v_last is null or v_last < now() - s.stale_after then
    return query select 'warning', 'maintenance stale', null::text,
      case when v_last is null then 'maintenance has never completed successfully'
           else format('last successful maintenance finished %s ago (alert after %s)', date_trunc('second', now() - v_last), s.stale_after) end;
  end if;

  -- changed metric groups waiting longer than stale_after: the nightly step cannot keep up with
  -- the writes, or does not run
  return query
    select 'warning', 'metrics backlog', null::text,
           format('%s changed group(s) of analytics.mv_daily_metrics wait for their recompute, the oldest since %s (alert after %s): '
                  'run select partition_mgmt.maintenance_runner() \gexec, or select analytics.refresh_daily_metrics();',
                  count(distinct (d.program_id, d.site_id, d.day)), min(d.marked_at), s.stale_after)
    from analytics.metrics_dirty d
    having min(d.marked_at) < now() - s.stale_after and (select x.populated_at is not null from analytics.metrics_state x);

  -- the last finished run stopped at its time budget: work is left for the next one
  return query
    select 'warning', 'maintenance unfinished', null::text, format('the run of %s stopped at its time budget: %s', l.started_at, l.detail ->> 'reason')
    from (select * from partition_mgmt.maintenance_log x where x.action = 'run' and x.status <> 'running' order by x.id desc limit 1) l
    where (l.detail ->> 'unfinished')::boolean;

  return query
    select 'error', 'maintenance action failed', l.table_key, format('%s at %s: %s', l.action, l.started_at, l.error)
    from partition_mgmt.maintenance_log l
    where l.status = 'error' and l.started_at > now() - s.stale_after;

  if to_regclass('cron.job_run_details') is not null then
    return query execute format($q$
      select 'error', 'cron job failed', null::text, format('%%s at %%s: %%s', j.jobname, d.start_time, left(d.return_message, 200))
      from %1$I.job_run_details d join %1$I.job j on j.jobid = d.jobid
      where d.status = 'failed' and d.start_time > now() - $1
        and j.jobname like 'partition-%%'$q$, 'cron') using s.stale_after;
  end if;

  -- read replicas: always said, like the lock budget; a warning when one stopped, lags (its replay
  -- more than max_standby_streaming_delay's default behind, or a WAL segment of 16 MB: a replay
  -- paused or blocked shows in bytes, not in replay_lag), or its readers were cancelled or sent to
  -- the primary since the last run
  return query
    select case when l.lagging or l.state <> 'streaming' then 'warning' else 'info' end,
           case when l.state <> 'streaming' then 'replica not streaming'
                when l.lagging then 'replica lagging' else 'replica' end,
           null::text,
           format('%s: %s, write/flush/replay lag %s/%s/%s, %s behind%s', l.replica, l.state,
                  coalesce(l.write_lag::text, '-'), coalesce(l.flush_lag::text, '-'), coalesce(l.replay_lag::text, '-'),
                  pg_catalog.pg_size_pretty(l.bytes_behind),
                  case when l.state = 'stopped' then format(' (its slot %s keeps that WAL on the primary: start it, or drop the slot if it is gone for good)', l.slot_name) else '' end)
    from (select x.*, coalesce(x.replay_lag, '0') >= interval '30 seconds' or coalesce(x.bytes_behind, 0) >= 16 * 1024 * 1024 as lagging
          from partition_mgmt.replica_lag() x) l;
  return query
    select 'warning', 'replica reads cancelled', null::text,
           format('%s: %s read(s) cancelled by recovery conflicts since %s (%s)', r.replica, r.conflicts_since_last_run,
                  coalesce(r.last_run_at::text, 'the read function first reported'), r.conflicts)
    from partition_mgmt.replica_routing r where r.conflicts_since_last_run > 0;
  return query
    select 'warning', 'replica reads fell back', null::text,
           format('%s: %s read(s) served by the primary instead since %s; the last at %s: %s', r.replica, r.fallbacks_since_last_run,
                  coalesce(r.last_run_at::text, 'the read function first reported'), r.last_fallback_at, r.last_fallback_reason)
    from partition_mgmt.replica_routing r where r.fallbacks_since_last_run > 0;
end
$$;

-- -----------------------------------------------------------------------------
-- Query performance (the plan's "Check query performance"): operators only
-- -----------------------------------------------------------------------------
do $$
begin
  if exists (select from pg_catalog.pg_extension where extname = 'pg_stat_statements') then
    execute format($v$
      create or replace view partition_mgmt.v_observation_query_stats as
      select s.query, s.calls, s.mean_exec_time, s.max_exec_time, s.total_exec_time, s.mean_plan_time, s.rows
      from %I.pg_stat_statements s
      where s.query ilike '%%petri_observations%%' or s.query ilike '%%gasifier_observations%%'
      order by s.mean_exec_time desc$v$,
      (select extnamespace::regnamespace::text from pg_catalog.pg_extension where extname = 'pg_stat_statements'));
    revoke all on partition_mgmt.v_observation_query_stats from public, anon, authenticated;
    grant select on partition_mgmt.v_observation_query_stats to service_role;
  else
    raise notice 'pg_stat_statements is not installed: partition_mgmt.v_observation_query_stats not created';
  end if;
end
$$;

-- -----------------------------------------------------------------------------
-- Scheduling on pg_cron
-- -----------------------------------------------------------------------------
create or replace function partition_mgmt.cron_available()
returns boolean
language sql stable
set search_path = ''
as $$ select exists (select from pg_catalog.pg_extension where extname = 'pg_cron') $$;

-- (Re)creates the named jobs; cron.schedule with an existing name replaces it, so this never
-- duplicates. Returns the jobs as scheduled.
create or replace function partition_mgmt.setup_maintenance_jobs(
  p_nightly text default '0 2 * * *',
  p_weekly text default '0 3 * * 0',
  p_purge text default '30 3 * * *')
returns table (jobname text, schedule text, command text)
language plpgsql
set search_path = ''
as $$
begin
  if not partition_mgmt.cron_available() then
    raise exception 'pg_cron is not installed in database %', current_database()
      using hint = 'Enable it (Dashboard > Database > Extensions, or create extension pg_cron with schema pg_catalog) in the database named by cron.database_name.';
  end if;
  execute format('select %I.schedule($1, $2, $3)', 'cron') using 'partition-maintenance-nightly', p_nightly, partition_mgmt.maintenance_runner();
  execute format('select %I.schedule($1, $2, $3)', 'cron') using 'partition-statistics-weekly', p_weekly, 'select partition_mgmt.weekly_statistics()';
  execute format('select %I.schedule($1, $2, $3)', 'cron') using 'partition-cron-history-purge', p_purge, 'select partition_mgmt.purge_cron_history()';
  return query execute format('select jobname::text, schedule::text, command::text from %I.job where jobname like ''partition-%%'' order by jobname', 'cron');
end
$$;

-- Reschedule one job, or pause/resume one or all of them.
create or replace function partition_mgmt.set_maintenance_job(p_jobname text, p_schedule text default null, p_active boolean default null)
returns table (jobname text, schedule text, active boolean)
language plpgsql
set search_path = ''
as $$
declare
  v_jobid bigint;
  v_found boolean := false;
begin
  if not partition_mgmt.cron_available() then
    raise exception 'pg_cron is not installed in database %', current_database();
  end if;
  for v_jobid in execute format('select jobid from %I.job where jobname like ''partition-%%'' and ($1 is null or jobname = $1)', 'cron') using p_jobname loop
    v_found := true;
    execute format('select %I.alter_job(job_id => $1, schedule => $2, active => $3)', 'cron') using v_jobid, p_schedule, p_active;
  end loop;
  if not v_found then
    raise exception 'no maintenance job named "%"', p_jobname
      using hint = 'Jobs: partition-maintenance-nightly, partition-statistics-weekly, partition-cron-history-purge (or NULL for all).';
  end if;
  return query execute format('select jobname::text, schedule::text, active from %I.job where jobname like ''partition-%%'' order by jobname', 'cron');
end
$$;

-- Enable pg_cron as Supabase does and schedule the jobs. pg_cron lives in one database
-- (cron.database_name, `postgres` on Supabase); elsewhere (e.g. a test clone) this is skipped.
do $$
begin
  if not partition_mgmt.cron_available()
     and current_database() = coalesce(current_setting('cron.database_name', true), 'postgres') then
    begin
      create extension if not exists pg_cron with schema pg_catalog;
    exception when insufficient_privilege or feature_not_supported or undefined_file then
      raise notice 'could not enable pg_cron (%): enable it in the dashboard, then run select partition_mgmt.setup_maintenance_jobs();', sqlerrm;
    end;
  end if;
  if partition_mgmt.cron_available() then
    perform partition_mgmt.setup_maintenance_jobs();
  else
    raise notice 'pg_cron not available in database %: maintenance jobs not scheduled', current_database();
  end if;
end
$$;

-- -----------------------------------------------------------------------------
-- Privileges: operators (postgres, service_role) only
-- -----------------------------------------------------------------------------
revoke all on all tables in schema partition_mgmt from anon, authenticated;
grant select on partition_mgmt.managed_tables to authenticated;
grant select on all tables in schema partition_mgmt to service_role;
revoke execute on all functions in schema partition_mgmt from public, anon;
grant execute on function partition_mgmt.replica_lag() to service_role;
grant execute on function partition_mgmt.health(), partition_mgmt.schedule_maintenance(text),
  partition_mgmt.cleanup_empty_partitions(integer), partition_mgmt.analyze_all_partitions(boolean, text),
  partition_mgmt.validate_partitions(), partition_mgmt.leaf_budget_report(), partition_mgmt.lock_budget(), partition_mgmt.lock_capacity(),
  partition_mgmt.keyless_lock_allowance(integer), partition_mgmt.apply_row_retention(text, integer), partition_mgmt.premake_partitions(text),
  partition_mgmt.maintenance_runner(text), partition_mgmt.maintenance_begin(text), partition_mgmt.maintenance_continue(uuid) to service_role;
