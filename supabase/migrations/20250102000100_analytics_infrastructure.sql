-- =============================================================================
-- Analytics infrastructure (the plan's 002_create_analytics_infrastructure).
--
-- Daily petri metrics per company, program and site in a materialized view. A materialized view has
-- no RLS, so it lives in the unexposed schema `analytics` and clients read it only through
-- public.get_daily_metrics(), which filters by the caller's companies. It is created empty: the
-- setup step `metrics` (20250102000350_setup_steps.sql) populates it online and maintenance keeps it
-- fresh. The view is bound to the table, not the name: the swap re-creates it against the new one.
-- Every statement is safe to run again.
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
  'Precomputed metrics (materialized views, no RLS). Read through public.get_daily_metrics(); not exposed.';

-- -----------------------------------------------------------------------------
-- Materialized view: analytics.mv_daily_metrics
-- Days are UTC calendar days. Aggregates are cast to numeric so the column types
-- (and public.get_daily_metrics' result type) do not depend on how the live
-- table declares growth_index.
-- Created empty (a catalog change only); populated by the setup step `metrics`.
-- -----------------------------------------------------------------------------
create materialized view if not exists analytics.mv_daily_metrics as
select o.company_id,
       o.program_id,
       o.site_id,
       (o.created_at at time zone 'UTC')::date as day,
       count(*)::bigint                        as observation_count,
       avg(o.growth_index)::numeric            as avg_growth_index,
       min(o.growth_index)::numeric            as min_growth_index,
       max(o.growth_index)::numeric            as max_growth_index,
       stddev_samp(o.growth_index)::numeric    as stddev_growth_index,
       max(o.created_at)                       as last_observation_at
from public.petri_observations o
group by o.company_id, o.program_id, o.site_id, (o.created_at at time zone 'UTC')::date
with no data;

-- the unique index makes REFRESH ... CONCURRENTLY possible
create unique index if not exists mv_daily_metrics_key_idx
  on analytics.mv_daily_metrics (company_id, program_id, site_id, day);
create index if not exists mv_daily_metrics_company_program_day_idx
  on analytics.mv_daily_metrics (company_id, program_id, day);

revoke all on analytics.mv_daily_metrics from public, anon, authenticated;
grant select on analytics.mv_daily_metrics to service_role;

comment on materialized view analytics.mv_daily_metrics is
  'Daily petri observation metrics per company, program, site and UTC day. No RLS: read it through '
  'public.get_daily_metrics(). Refreshed by analytics.refresh_daily_metrics().';
comment on column analytics.mv_daily_metrics.day is 'UTC calendar day of created_at.';
comment on column analytics.mv_daily_metrics.stddev_growth_index is
  'Sample standard deviation; NULL for a single observation.';

-- -----------------------------------------------------------------------------
-- Maintenance: analytics.refresh_daily_metrics()
-- CONCURRENTLY keeps the view readable during the refresh, but PostgreSQL
-- refuses it on a view that has never been populated: refresh plainly then.
-- SECURITY DEFINER because only the owner may refresh; callable by
-- service_role (and postgres, the owner) only.
-- -----------------------------------------------------------------------------
create or replace function analytics.refresh_daily_metrics()
returns text
language plpgsql
security definer
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_populated boolean;
begin
  select c.relispopulated into v_populated
  from pg_catalog.pg_class c
  where c.oid = 'analytics.mv_daily_metrics'::pg_catalog.regclass;

  if v_populated then
    refresh materialized view concurrently analytics.mv_daily_metrics;
    return 'concurrently';
  end if;
  refresh materialized view analytics.mv_daily_metrics;
  return 'full';
end;
$$;

revoke execute on function analytics.refresh_daily_metrics() from public, anon, authenticated;
grant execute on function analytics.refresh_daily_metrics() to service_role;

comment on function analytics.refresh_daily_metrics() is
  'Refreshes analytics.mv_daily_metrics: concurrently when already populated (returns ''concurrently''), '
  'otherwise a plain first population (returns ''full''). service_role and postgres only.';

-- -----------------------------------------------------------------------------
-- Public API: public.get_daily_metrics()
-- SECURITY DEFINER to read the view the caller cannot see; it applies the same
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
  if not (select c.relispopulated from pg_catalog.pg_class c
          where c.oid = 'analytics.mv_daily_metrics'::pg_catalog.regclass) then
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
