-- =============================================================================
-- Analytics infrastructure (the plan's 002_create_analytics_infrastructure).
--
-- Daily petri metrics per company, program, site and UTC day, kept by what changed: statement
-- triggers on public.petri_observations record the groups a write touched (analytics.metrics_dirty)
-- and maintenance recomputes only those (analytics.daily_metrics, read as analytics.mv_daily_metrics).
-- The metrics have no RLS, so they live in the unexposed schema `analytics` and clients read them
-- only through public.get_daily_metrics(), which filters by the caller's companies. They are created
-- empty: the setup step `metrics` (20250102000350_setup_steps.sql) computes them online, a
-- program/site pair at a time. The triggers are on the legacy table and on the partitioned table
-- (create_partitioned_table copies them); only the table named public.petri_observations records, so
-- they follow the name across the swap and a rollback. Every statement is safe to run again.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

-- -----------------------------------------------------------------------------
-- Schema
-- Not in the Data API's exposed schemas, and no API role may even look inside:
-- only service_role, to call the maintenance function.
-- -----------------------------------------------------------------------------

create schema if not exists analytics;
revoke all on schema analytics from public, anon, authenticated;
grant usage on schema analytics to service_role;

comment on schema analytics is
  'Precomputed metrics (tables kept by what changed, no RLS). Read through public.get_daily_metrics(); not exposed.';

-- -----------------------------------------------------------------------------
-- Tables: the stored metrics, the groups written since they were computed, the state
-- The metrics are kept by what changed (the idea of TimescaleDB's continuous aggregates and of
-- pg_ivm, in plain PL/pgSQL): every statement that writes public.petri_observations records the
-- (program, site, UTC day) groups it touched in analytics.metrics_dirty, and maintenance
-- recomputes only those groups from the table's rows, a bounded batch per transaction. The cost
-- of a refresh follows the writes since the last one, not the size of the table.
-- Days are UTC calendar days. Aggregates are cast to numeric so the column types (and
-- public.get_daily_metrics' result type) do not depend on how the live table declares
-- growth_index.
-- -----------------------------------------------------------------------------

create table if not exists analytics.daily_metrics (
  id                  bigint generated always as identity primary key,
  company_id          uuid,
  program_id          uuid not null,
  site_id             uuid not null,
  day                 date not null,
  observation_count   bigint not null,
  avg_growth_index    numeric,
  min_growth_index    numeric,
  max_growth_index    numeric,
  stddev_growth_index numeric,
  last_observation_at timestamptz not null
);
-- one row per (company, program, site, day): a group recomputed twice at once fails instead of
-- counting twice
create unique index if not exists daily_metrics_group_idx
  on analytics.daily_metrics (program_id, site_id, day, company_id) nulls not distinct;
revoke all on analytics.daily_metrics from public, anon, authenticated;
grant select on analytics.daily_metrics to service_role;
comment on table analytics.daily_metrics is
  'Daily petri observation metrics per company, program, site and UTC day, kept by recomputing the groups listed in '
  'analytics.metrics_dirty (analytics.refresh_daily_metrics(), nightly maintenance). Read through public.get_daily_metrics().';
comment on column analytics.daily_metrics.day is 'UTC calendar day of created_at.';
comment on column analytics.daily_metrics.stddev_growth_index is
  'Sample standard deviation; NULL for a single observation.';

-- A row per group and writing transaction: the key ends with the writer's transaction id, so a
-- second statement of the same transaction on the same group adds nothing (ON CONFLICT DO
-- NOTHING), and two transactions never wait for each other on it (a unique key on the group
-- alone would make a writer wait for every uncommitted writer of the same site and day, and two
-- writers of two sites could deadlock). marked_at serves health()'s backlog finding.
create table if not exists analytics.metrics_dirty (
  program_id uuid not null,
  site_id    uuid not null,
  day        date not null,
  marked_by  xid8 not null default pg_catalog.pg_current_xact_id(),
  marked_at  timestamptz not null default now(),
  primary key (program_id, site_id, day, marked_by)
);
revoke all on analytics.metrics_dirty from public, anon, authenticated;
grant select on analytics.metrics_dirty to service_role;
comment on table analytics.metrics_dirty is
  'The (program, site, UTC day) groups of public.petri_observations written since their metrics were computed: filled by the '
  'statement triggers metrics_changed_*, emptied by analytics.refresh_daily_metrics() and maintenance as they recompute them.';

-- The (program, site) pairs a full computation still has to do (the setup step metrics, or
-- analytics.rebuild_daily_metrics() for a repair), one pair per piece of work.
create table if not exists analytics.metrics_rebuild (
  program_id uuid not null,
  site_id    uuid not null,
  primary key (program_id, site_id)
);
revoke all on analytics.metrics_rebuild from public, anon, authenticated;
grant select on analytics.metrics_rebuild to service_role;
comment on table analytics.metrics_rebuild is
  'The program/site pairs a full computation of analytics.daily_metrics has still to do (empty when none runs).';

create table if not exists analytics.metrics_state (
  id                 boolean primary key default true check (id),
  populated_at       timestamptz,
  rebuild_started_at timestamptz,
  rebuild_pairs      integer
);
insert into analytics.metrics_state default values on conflict (id) do nothing;
revoke all on analytics.metrics_state from public, anon, authenticated;
grant select on analytics.metrics_state to service_role;
comment on table analytics.metrics_state is
  'populated_at: when the first full computation ended (until then public.get_daily_metrics() refuses: setup has not run); '
  'rebuild_started_at, rebuild_pairs: the full computation in progress, if any.';

-- The name the app reads (it was a materialized view): the same columns, over the stored table.
create or replace view analytics.mv_daily_metrics with (security_invoker = true) as
select m.company_id, m.program_id, m.site_id, m.day, m.observation_count, m.avg_growth_index,
       m.min_growth_index, m.max_growth_index, m.stddev_growth_index, m.last_observation_at
from analytics.daily_metrics m;
revoke all on analytics.mv_daily_metrics from public, anon, authenticated;
grant select on analytics.mv_daily_metrics to service_role;
comment on view analytics.mv_daily_metrics is
  'Daily petri observation metrics per company, program, site and UTC day (analytics.daily_metrics). No RLS: read it through '
  'public.get_daily_metrics(). Kept by analytics.refresh_daily_metrics() and nightly maintenance.';

-- -----------------------------------------------------------------------------
-- Writes record the groups they touched: analytics.mark_metrics_changed()
-- Statement-level AFTER triggers with transition tables (on a partitioned table they are allowed
-- on the root, and see the rows of every leaf): one INSERT per statement, whatever its row count.
-- On the legacy table (the push adds them) and on the partitioned copy (created with the tree, from
-- the legacy table's), so they hold across the swap and a rollback; the partitioned copy takes the
-- update's only, its key table's row trigger records inserts and deletes for less per single-row
-- insert (partition_mgmt.install_key_trigger, same rule: only while it is live). Only the table the app calls
-- public.petri_observations counts: the copy filled by the backfill and the sync before the swap,
-- and the legacy table the reverse sync keeps after it, hold the same rows as the live table, so
-- their writes change no metric (and the backfill pays nothing for them).
-- SECURITY DEFINER: the app's roles write the table, not analytics.
-- -----------------------------------------------------------------------------

create or replace function analytics.mark_metrics_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_table_name <> 'petri_observations' or tg_table_schema <> 'public' then
    return null;
  end if;
  if tg_op = 'INSERT' then
    insert into analytics.metrics_dirty (program_id, site_id, day)
    select distinct n.program_id, n.site_id, (n.created_at at time zone 'UTC')::date from new_rows n
    where n.program_id is not null and n.site_id is not null and n.created_at is not null
    on conflict do nothing;
  elsif tg_op = 'DELETE' then
    insert into analytics.metrics_dirty (program_id, site_id, day)
    select distinct o.program_id, o.site_id, (o.created_at at time zone 'UTC')::date from old_rows o
    where o.program_id is not null and o.site_id is not null and o.created_at is not null
    on conflict do nothing;
  else
    -- the old group and the new one (a row moved to another day, site or program leaves one)
    insert into analytics.metrics_dirty (program_id, site_id, day)
    select n.program_id, n.site_id, (n.created_at at time zone 'UTC')::date from new_rows n
    where n.program_id is not null and n.site_id is not null and n.created_at is not null
    union
    select o.program_id, o.site_id, (o.created_at at time zone 'UTC')::date from old_rows o
    where o.program_id is not null and o.site_id is not null and o.created_at is not null
    on conflict do nothing;
  end if;
  return null;
end
$$;
revoke execute on function analytics.mark_metrics_changed() from public, anon, authenticated;
comment on function analytics.mark_metrics_changed() is
  'Statement trigger of public.petri_observations (legacy and partitioned): records the (program, site, UTC day) groups a '
  'statement wrote in analytics.metrics_dirty, one INSERT per statement.';

-- The triggers on p_table (the legacy table at the push; create_partitioned_table copies them to
-- the partitioned table).
create or replace function analytics.install_metrics_triggers(p_table regclass)
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute format('create or replace trigger metrics_changed_insert after insert on %s referencing new table as new_rows '
                 'for each statement execute function analytics.mark_metrics_changed()', p_table);
  execute format('create or replace trigger metrics_changed_update after update on %s referencing old table as old_rows new table as new_rows '
                 'for each statement execute function analytics.mark_metrics_changed()', p_table);
  execute format('create or replace trigger metrics_changed_delete after delete on %s referencing old table as old_rows '
                 'for each statement execute function analytics.mark_metrics_changed()', p_table);
end
$$;
revoke execute on function analytics.install_metrics_triggers(regclass) from public, anon, authenticated;

-- -----------------------------------------------------------------------------
-- Recomputing: one group, the changed groups, a full computation
-- -----------------------------------------------------------------------------

-- One session at a time writes the metrics (its transaction holds this advisory lock).
create or replace function analytics.metrics_lock_key()
returns bigint
language sql immutable
set search_path = ''
as $$ select pg_catalog.hashtextextended('analytics:metrics', 0) $$;
revoke execute on function analytics.metrics_lock_key() from public, anon, authenticated;

-- Replaces the metrics of one program and site, on the UTC days p_from .. p_to (NULL: every day),
-- by the aggregates of the live table's rows, found through the keys (one leaf of a partitioned
-- table, the metrics index of the legacy table). A custom plan for every call, so that the keys
-- prune the partitions while planning. Returns the groups written.
create or replace function analytics.recompute_metrics(p_program uuid, p_site uuid, p_from date, p_to date)
returns integer
language plpgsql
set search_path = ''
set plan_cache_mode = force_custom_plan
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_n integer;
begin
  delete from analytics.daily_metrics m
  where m.program_id = p_program and m.site_id = p_site
    and (p_from is null or m.day >= p_from) and (p_to is null or m.day <= p_to);
  insert into analytics.daily_metrics (company_id, program_id, site_id, day, observation_count, avg_growth_index,
                                       min_growth_index, max_growth_index, stddev_growth_index, last_observation_at)
  select o.company_id, o.program_id, o.site_id, (o.created_at at time zone 'UTC')::date,
         count(*)::bigint, avg(o.growth_index)::numeric, min(o.growth_index)::numeric, max(o.growth_index)::numeric,
         stddev_samp(o.growth_index)::numeric, max(o.created_at)
  from public.petri_observations o
  where o.program_id = p_program and o.site_id = p_site
    and (p_from is null or o.created_at >= p_from::timestamp at time zone 'UTC')
    and (p_to is null or o.created_at < (p_to + 1)::timestamp at time zone 'UTC')
  group by o.company_id, o.program_id, o.site_id, (o.created_at at time zone 'UTC')::date;
  get diagnostics v_n = row_count;
  return v_n;
end
$$;
revoke execute on function analytics.recompute_metrics(uuid, uuid, date, date) from public, anon, authenticated;

-- Recomputes changed groups, batch after batch, until none is left or p_max_seconds (NULL: no
-- limit) have passed; a batch (p_batch groups) is always finished. Order matters for writes that
-- race it: a batch's dirty rows are deleted first (DELETE ... RETURNING, its own snapshot), then
-- each group is recomputed by a later statement, whose snapshot sees every write whose dirty row
-- was deleted; a write not yet committed when the rows were taken keeps its own dirty row (the key
-- holds its transaction id), so its group is recomputed again by the next pass.
create or replace function analytics.refresh_changed_metrics(p_max_seconds numeric default null, p_batch integer default 100,
  out groups integer, out remaining bigint)
language plpgsql
set search_path = ''
as $$
declare
  v_deadline timestamptz := clock_timestamp() + make_interval(secs => coalesce(p_max_seconds, 1e7));
  v_programs uuid[];
  v_sites uuid[];
  v_days date[];
begin
  groups := 0;
  loop
    with picked as (
      select distinct d.program_id, d.site_id, d.day from analytics.metrics_dirty d
      order by d.program_id, d.site_id, d.day limit p_batch),
    taken as (
      delete from analytics.metrics_dirty d using picked p
      where d.program_id = p.program_id and d.site_id = p.site_id and d.day = p.day
      returning d.program_id, d.site_id, d.day)
    select array_agg(t.program_id order by t.program_id, t.site_id, t.day), array_agg(t.site_id order by t.program_id, t.site_id, t.day),
           array_agg(t.day order by t.program_id, t.site_id, t.day)
      into v_programs, v_sites, v_days
    from (select distinct x.program_id, x.site_id, x.day from taken x) t;
    exit when v_programs is null;
    for i in 1 .. cardinality(v_programs) loop
      perform analytics.recompute_metrics(v_programs[i], v_sites[i], v_days[i], v_days[i]);
    end loop;
    groups := groups + cardinality(v_programs);
    exit when clock_timestamp() >= v_deadline;
  end loop;
  remaining := (select count(*) from (select distinct d.program_id, d.site_id, d.day from analytics.metrics_dirty d) x);
end
$$;
revoke execute on function analytics.refresh_changed_metrics(numeric, integer) from public, anon, authenticated;

-- Starts a full computation: lists the (program, site) pairs to compute, never reading the table's
-- rows. The legacy table: every pair it holds, one probe of the metrics index per pair (a skip
-- scan). A partitioned table (whose leaves have no index in that order): each site under its
-- program (public.sites) and every site partition's pair; rows filed under another program than
-- their site's are written through the triggers from then on. Drops the metrics of pairs not
-- listed.
create or replace function analytics.start_metrics_rebuild()
returns integer
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_n integer;
begin
  delete from analytics.metrics_rebuild;
  if (select c.relkind from pg_catalog.pg_class c where c.oid = 'public.petri_observations'::pg_catalog.regclass) = 'p' then
    insert into analytics.metrics_rebuild (program_id, site_id)
    select s.program_id, s.site_id from public.sites s where s.program_id is not null
    union
    select g.program_id, g.site_id from partition_mgmt.partition_registry g
    join partition_mgmt.managed_tables m on m.table_key = g.table_key and m.parent = 'public.petri_observations'::pg_catalog.regclass
    where g.program_id is not null and g.site_id is not null;
  else
    insert into analytics.metrics_rebuild (program_id, site_id)
    with recursive pairs as (
      (select o.program_id, o.site_id from public.petri_observations o
       where o.program_id is not null and o.site_id is not null
       order by o.program_id, o.site_id limit 1)
      union all
      select x.program_id, x.site_id from pairs p
      cross join lateral (select o.program_id, o.site_id from public.petri_observations o
                          where (o.program_id, o.site_id) > (p.program_id, p.site_id) and o.site_id is not null
                          order by o.program_id, o.site_id limit 1) x
    )
    select p.program_id, p.site_id from pairs p;
  end if;
  get diagnostics v_n = row_count;
  delete from analytics.daily_metrics m
  where not exists (select from analytics.metrics_rebuild q where q.program_id = m.program_id and q.site_id = m.site_id);
  update analytics.metrics_state set rebuild_started_at = now(), rebuild_pairs = v_n;
  return v_n;
end
$$;
revoke execute on function analytics.start_metrics_rebuild() from public, anon, authenticated;

-- Goes on with the full computation, pair after pair, for at most p_max_seconds (NULL: to the
-- end): the pair's dirty rows go first (as in refresh_changed_metrics), then every day of the pair
-- is recomputed from its rows. True when it is finished (then the metrics count as populated).
create or replace function analytics.continue_metrics_rebuild(p_max_seconds numeric default null)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_deadline timestamptz := clock_timestamp() + make_interval(secs => coalesce(p_max_seconds, 1e7));
  r record;
begin
  loop
    select q.program_id, q.site_id into r from analytics.metrics_rebuild q order by q.program_id, q.site_id limit 1;
    if not found then
      update analytics.metrics_state set populated_at = coalesce(populated_at, now()), rebuild_started_at = null, rebuild_pairs = null;
      return true;
    end if;
    delete from analytics.metrics_dirty d where d.program_id = r.program_id and d.site_id = r.site_id;
    perform analytics.recompute_metrics(r.program_id, r.site_id, null, null);
    delete from analytics.metrics_rebuild q where q.program_id = r.program_id and q.site_id = r.site_id;
    exit when clock_timestamp() >= v_deadline;
  end loop;
  return not exists (select from analytics.metrics_rebuild);
end
$$;
revoke execute on function analytics.continue_metrics_rebuild(numeric) from public, anon, authenticated;

-- One bounded piece of metrics work, for maintenance and the setup step: a full computation in
-- progress goes on first; otherwise the changed groups, once the metrics were populated (before
-- that only the setup step, or refresh_daily_metrics(), starts the first computation).
-- more: work is left. One session at a time (the others return at once, with more = false).
create or replace function analytics.maintain_daily_metrics(p_max_seconds numeric, out mode text, out groups integer, out remaining bigint, out more boolean)
language plpgsql
set search_path = ''
as $$
declare
  v_state analytics.metrics_state;
  v_done boolean;
begin
  groups := 0;
  remaining := 0;
  more := false;
  if not pg_catalog.pg_try_advisory_xact_lock(analytics.metrics_lock_key()) then
    mode := 'busy';
    return;
  end if;
  select * into v_state from analytics.metrics_state;
  if v_state.rebuild_started_at is not null then
    v_done := analytics.continue_metrics_rebuild(p_max_seconds);
    mode := 'rebuild';
    remaining := (select count(*) from analytics.metrics_rebuild);
    more := not v_done;
    return;
  end if;
  if v_state.populated_at is null then
    mode := 'not populated';
    return;
  end if;
  select x.groups, x.remaining into groups, remaining from analytics.refresh_changed_metrics(p_max_seconds) x;
  mode := 'changed';
  more := remaining > 0;
end
$$;
revoke execute on function analytics.maintain_daily_metrics(numeric) from public, anon, authenticated;

-- The setup step metrics: starts the first computation when none was made, goes on with it for at
-- most p_max_seconds; true when the metrics are populated.
create or replace function analytics.populate_daily_metrics(p_max_seconds numeric)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  perform pg_catalog.pg_advisory_xact_lock(analytics.metrics_lock_key());
  if (select s.populated_at is not null and s.rebuild_started_at is null from analytics.metrics_state s) then
    return true;
  end if;
  if (select s.rebuild_started_at is null from analytics.metrics_state s) then
    perform analytics.start_metrics_rebuild();
    return false;   -- the listing was this call's work: the pairs follow in the next calls
  end if;
  return analytics.continue_metrics_rebuild(p_max_seconds);
end
$$;
revoke execute on function analytics.populate_daily_metrics(numeric) from public, anon, authenticated;

-- -----------------------------------------------------------------------------
-- Maintenance by hand: analytics.refresh_daily_metrics(), analytics.rebuild_daily_metrics()
-- SECURITY DEFINER because only the owner may write the metrics; callable by service_role (and
-- postgres, the owner) only. Each runs to the end in the caller's transaction.
-- -----------------------------------------------------------------------------

create or replace function analytics.refresh_daily_metrics()
returns text
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform pg_catalog.pg_advisory_xact_lock(analytics.metrics_lock_key());
  if (select s.populated_at is null and s.rebuild_started_at is null from analytics.metrics_state s) then
    perform analytics.start_metrics_rebuild();
  end if;
  if (select s.rebuild_started_at is not null from analytics.metrics_state s) then
    perform analytics.continue_metrics_rebuild(null);
    perform analytics.refresh_changed_metrics(null);
    return 'full';
  end if;
  perform analytics.refresh_changed_metrics(null);
  return 'changed';
end
$$;
revoke execute on function analytics.refresh_daily_metrics() from public, anon, authenticated;
grant execute on function analytics.refresh_daily_metrics() to service_role;
comment on function analytics.refresh_daily_metrics() is
  'Brings analytics.mv_daily_metrics up to date in this transaction: recomputes the groups written since (returns ''changed''); '
  'when the metrics were never populated, or a full computation is under way, computes them all first (returns ''full''). '
  'service_role and postgres only.';

create or replace function analytics.rebuild_daily_metrics()
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pairs integer;
begin
  perform pg_catalog.pg_advisory_xact_lock(analytics.metrics_lock_key());
  v_pairs := analytics.start_metrics_rebuild();
  perform analytics.continue_metrics_rebuild(null);
  perform analytics.refresh_changed_metrics(null);
  return format('recomputed %s program/site pairs', v_pairs);
end
$$;
revoke execute on function analytics.rebuild_daily_metrics() from public, anon, authenticated;
grant execute on function analytics.rebuild_daily_metrics() to service_role;
comment on function analytics.rebuild_daily_metrics() is
  'Repair: recomputes every metric from the table in this transaction (reads every row: on a large table run it in a session '
  'with a long statement_timeout). service_role and postgres only.';

-- -----------------------------------------------------------------------------
-- Public API: public.get_daily_metrics()
-- SECURITY DEFINER to read the metrics the caller cannot see; it applies the same
-- rule as the tables' RLS itself:
--   * the caller's role is the one set with SET ROLE (PostgREST sets it from
--     the JWT), or the session user when none is set. current_setting('role')
--     is used rather than auth.role(), because request.jwt.claims is a setting
--     any session can write, while SET ROLE requires membership in the role.
--   * a caller whose role bypasses RLS (service_role, postgres) sees every
--     company; anyone else sees only private.user_company_ids().
-- -----------------------------------------------------------------------------
create or replace function public.get_daily_metrics(
  p_program_id uuid,
  p_start_date date default null,
  p_end_date   date default null,
  p_site_id    uuid default null
)
returns table (
  company_id          uuid,
  program_id          uuid,
  site_id             uuid,
  day                 date,
  observation_count   bigint,
  avg_growth_index    numeric,
  min_growth_index    numeric,
  max_growth_index    numeric,
  stddev_growth_index numeric,
  last_observation_at timestamptz
)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_caller_role text := coalesce(nullif(current_setting('role', true), 'none'), session_user);
  v_sees_all    boolean;
  v_company_ids uuid[];
begin
  if p_program_id is null then
    raise exception 'get_daily_metrics: p_program_id is required (got NULL; p_site_id %, dates % to %)',
      p_site_id, p_start_date, p_end_date
      using errcode = 'null_value_not_allowed',
            hint = 'Pass the program_id of one of your programs.';
  end if;
  if p_end_date < p_start_date then
    raise exception 'get_daily_metrics: p_end_date % is before p_start_date % (program %)',
      p_end_date, p_start_date, p_program_id
      using errcode = 'invalid_parameter_value',
            hint = 'Swap the dates, or pass NULL for an open-ended range; both bounds are inclusive.';
  end if;
  if (select s.populated_at is null from analytics.metrics_state s) then
    raise exception 'get_daily_metrics: analytics.mv_daily_metrics has not been populated yet'
      using errcode = 'object_not_in_prerequisite_state',
            hint = 'Run the setup steps (npm run admin -- setup, or select partition_mgmt.setup_runner() \gexec in psql), or select analytics.refresh_daily_metrics(); as service_role or postgres.';
  end if;

  select r.rolbypassrls into v_sees_all from pg_catalog.pg_roles r where r.rolname = v_caller_role;
  if not coalesce(v_sees_all, false) then
    v_company_ids := private.user_company_ids();
  end if;

  return query
    select m.company_id, m.program_id, m.site_id, m.day, m.observation_count,
           m.avg_growth_index, m.min_growth_index, m.max_growth_index, m.stddev_growth_index,
           m.last_observation_at
    from analytics.mv_daily_metrics m
    where m.program_id = p_program_id
      and (coalesce(v_sees_all, false) or m.company_id = any (v_company_ids))
      and (p_site_id is null or m.site_id = p_site_id)
      and (p_start_date is null or m.day >= p_start_date)
      and (p_end_date is null or m.day <= p_end_date)
    order by m.day, m.site_id;
end;
$$;

revoke execute on function public.get_daily_metrics(uuid, date, date, uuid) from public, anon;
grant execute on function public.get_daily_metrics(uuid, date, date, uuid) to authenticated, service_role;

comment on function public.get_daily_metrics(uuid, date, date, uuid) is
  'Daily petri metrics of one program (optionally one site, inclusive UTC date range), from '
  'analytics.mv_daily_metrics. Users get only rows of their own companies; service_role gets all.';

-- -----------------------------------------------------------------------------
-- The triggers on the live table (catalog changes only, at the end of the file so the lock is held
-- for milliseconds: the transaction commits right after). CREATE TRIGGER takes SHARE ROW
-- EXCLUSIVE: the app's reads go on, its writes wait for the commit.
-- -----------------------------------------------------------------------------

select private.report_deploy(format('trigger %s on public.petri_observations', t),
         case when exists (select from pg_catalog.pg_trigger g where g.tgrelid = 'public.petri_observations'::regclass and g.tgname = t)
              then 'kept (existed)' else 'added' end,
         'AFTER INSERT / UPDATE / DELETE FOR EACH STATEMENT: one insert per statement into analytics.metrics_dirty, the groups whose daily metrics maintenance recomputes')
from unnest(array['metrics_changed_insert', 'metrics_changed_update', 'metrics_changed_delete']) t;
select private.lock_for_ddl(array['public.petri_observations'], 'share row exclusive');
select analytics.install_metrics_triggers('public.petri_observations');
