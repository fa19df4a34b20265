-- =============================================================================
-- Sizing: when a program or a site gets partitions of its own, and at which granularity, from the
-- rows the data has per period and the target rows per leaf. plan_tree applies the rule to a
-- table's data; premake, promotion and maintenance call the same functions.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Configuration
-- -----------------------------------------------------------------------------

create table if not exists partition_mgmt.site_granularity (
  table_key    text not null references partition_mgmt.managed_tables (table_key) on delete cascade,
  site_id      uuid not null,
  granularity  text not null check (granularity in ('week', 'month', 'quarter', 'year', 'none')),
  updated_at   timestamptz not null default now(),
  primary key (table_key, site_id)
);
comment on table partition_mgmt.site_granularity is
  'Per-site time split pinned by an operator (weekly for a high-volume site, none for a tiny one). In a sized tree a pinned site gets partitions of its own whatever its rows. Applies to partitions created after the setting.';

-- -----------------------------------------------------------------------------
-- Periods and the sizing rule
--
-- How big a leaf gets, in one place; every function that plans, promotes or premakes partitions
-- asks these (supabase/tests/database/13-sizing-rule checks that no other function repeats them).
--
--   A leaf is full when it holds target_rows_per_leaf rows (fills_leaf). In a sized tree a site
--   gets partitions of its own once its rows fill a leaf or it is pinned (set_site_granularity), and
--   a program once its rows fill a leaf or one of its sites gets partitions of its own; until then
--   each shares its parent's DEFAULT leaf. A site's period is the shortest of week, month, quarter
--   and year in which its rate fills a leaf (granularity_for_rate); a site that fills no year keeps
--   one leaf for all its time ('none'), unless its time is split already: then years. Its rate
--   (rows_per_period) is its rows over the span of their times, a month at least: all its rows when
--   the tree is planned or the site is promoted, its last rate_window() (90 days) when maintenance
--   sets the period of its next leaves (a leaf once made is never split). Its periods reach
--   premake_horizon(): the end of the month premake_months after this one, or the program's end.
--
--   Maintenance counts a shared leaf's rows only when its statistics say one program or site in it
--   may be within promotion_margin() (90%) of the target (may_fill_leaf): statistics lag behind the
--   writes, and counting every shared leaf every night would scan them all. What it promotes is
--   decided on the exact count (fills_leaf).
--
--   Periods are UTC weeks (ISO, from Monday), months, quarters and years (period_length); a rate
--   counts a month as the average Gregorian month, 365.2425 / 12 days (period_seconds).
-- -----------------------------------------------------------------------------

-- The calendar step of a period (null for 'none', which has no periods).
create or replace function partition_mgmt.period_length(p_granularity text)
returns interval
language sql immutable
set search_path = ''
as $$
  select case p_granularity when 'week' then interval '7 days' when 'month' then interval '1 month'
                            when 'quarter' then interval '3 months' when 'year' then interval '1 year' end
$$;

-- The average length of a period in seconds, for rates: a month is 365.2425 / 12 days.
create or replace function partition_mgmt.period_seconds(p_granularity text)
returns numeric
language sql immutable
set search_path = ''
as $$
  select case p_granularity when 'week' then 7 * 86400 when 'month' then 2629746
                            when 'quarter' then 3 * 2629746 when 'year' then 12 * 2629746 end::numeric
$$;

-- UTC period containing p_ts for a granularity (week, month, quarter, year).
create or replace function partition_mgmt.period_bounds(p_granularity text, p_ts timestamptz, out range_start timestamptz, out range_end timestamptz)
language plpgsql immutable
set search_path = ''
as $$
begin
  if p_granularity not in ('week', 'month', 'quarter', 'year') then
    raise exception 'granularity "%" has no periods', p_granularity using hint = 'Use week, month, quarter or year.';
  end if;
  range_start := date_trunc(p_granularity, p_ts at time zone 'UTC') at time zone 'UTC';
  range_end := (date_trunc(p_granularity, p_ts at time zone 'UTC') + partition_mgmt.period_length(p_granularity)) at time zone 'UTC';
end
$$;

-- Whether p_rows fill a leaf of p_target rows: the threshold of a program's or site's partitions
-- of its own, and of a period's length.
create or replace function partition_mgmt.fills_leaf(p_rows numeric, p_target bigint)
returns boolean
language sql immutable
set search_path = ''
as $$
  select coalesce(p_rows, 0) >= p_target
$$;

-- How close to the target a statistics estimate must come for maintenance to count the rows.
create or replace function partition_mgmt.promotion_margin()
returns numeric
language sql immutable
set search_path = ''
as $$
  select 0.9
$$;

-- Whether an estimate from statistics may reach the target (null without an estimate).
create or replace function partition_mgmt.may_fill_leaf(p_estimate double precision, p_target bigint)
returns boolean
language sql immutable
set search_path = ''
as $$
  select p_estimate >= p_target * partition_mgmt.promotion_margin()
$$;

-- The rows a period of p_granularity holds at the rate of p_rows over p_span (a month at least:
-- a site's first weeks say little about its rate).
create or replace function partition_mgmt.rows_per_period(p_rows numeric, p_span interval, p_granularity text)
returns numeric
language sql immutable
set search_path = ''
as $$
  select p_rows * partition_mgmt.period_seconds(p_granularity)
         / greatest(partition_mgmt.period_seconds('month'), extract(epoch from coalesce(p_span, interval '0')))
$$;

-- The time split of a site in a sized tree: the shortest period that p_rows over p_span fill, 'none'
-- (one leaf for all time) when not even a year does. A site whose time is already split (p_range)
-- never gets 'none': its next periods are at most a year.
create or replace function partition_mgmt.granularity_for_rate(p_rows numeric, p_span interval, p_target bigint, p_range boolean default false)
returns text
language sql immutable
set search_path = ''
as $$
  select case when partition_mgmt.fills_leaf(partition_mgmt.rows_per_period(p_rows, p_span, 'week'), p_target) then 'week'
              when partition_mgmt.fills_leaf(partition_mgmt.rows_per_period(p_rows, p_span, 'month'), p_target) then 'month'
              when partition_mgmt.fills_leaf(partition_mgmt.rows_per_period(p_rows, p_span, 'quarter'), p_target) then 'quarter'
              when partition_mgmt.fills_leaf(partition_mgmt.rows_per_period(p_rows, p_span, 'year'), p_target) or p_range then 'year'
              else 'none' end
$$;

-- The window of a site's recent rows that sets the period of its next leaves.
create or replace function partition_mgmt.rate_window()
returns interval
language sql immutable
set search_path = ''
as $$
  select interval '90 days'
$$;

-- How far ahead a site's periods are made: to the end of the month p_premake_months after this
-- one (UTC), or to the end of the program's last day when that comes first.
create or replace function partition_mgmt.premake_horizon(p_premake_months integer, p_end_date date)
returns timestamptz
language sql stable
set search_path = ''
as $$
  select least((p_end_date + 1)::timestamp at time zone 'UTC',
               (date_trunc('month', now() at time zone 'UTC') + make_interval(months => p_premake_months + 1)) at time zone 'UTC')
$$;

-- -----------------------------------------------------------------------------
-- Lock budget. Every relation a statement touches takes a slot in the server's shared lock
-- table until the transaction ends; DDL holds ACCESS EXCLUSIVE on every relation it creates.
-- The table holds max_locks_per_transaction x (max_connections + autovacuum_max_workers + 1 +
-- max_worker_processes + max_wal_senders + max_prepared_transactions) slots for all sessions
-- together (hosted Micro: 64 x 75 = 4,800), and a full table answers "out of shared memory" to
-- every session. So the bundle counts: what a statement without the partition keys needs, and
-- how much of the table one of its own transactions may take before it commits and goes on.
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.site_granularity_for(p_table_key text, p_site_id uuid)
returns text
language sql stable
set search_path = ''
as $$
  select coalesce(
    (select granularity from partition_mgmt.site_granularity where table_key = p_table_key and site_id = p_site_id),
    (select default_granularity from partition_mgmt.managed_tables where table_key = p_table_key))
$$;
create or replace function partition_mgmt.set_site_granularity(p_site_id uuid, p_granularity text, p_table_key text default null)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_granularity is null or p_granularity not in ('week', 'month', 'quarter', 'year', 'none') then
    raise exception 'invalid granularity "%" for site %', p_granularity, p_site_id using hint = 'Use week, month, quarter, year or none.';
  end if;
  if p_table_key is not null then
    perform partition_mgmt.config(p_table_key);
  end if;
  insert into partition_mgmt.site_granularity (table_key, site_id, granularity)
  select table_key, p_site_id, p_granularity from partition_mgmt.managed_tables
  where p_table_key is null or table_key = p_table_key
  on conflict (table_key, site_id) do update set granularity = excluded.granularity, updated_at = now();
end
$$;

-- -----------------------------------------------------------------------------
-- Automatic creation: program, site and period partitions
-- -----------------------------------------------------------------------------

-- The split of a site's next periods: its pinned granularity, else the table's default (literal
-- trees) or the split recorded on its site partition (sized trees; premake adjusts it to the
-- site's rate). A pin of 'none' on a site already split by time gives months.
create or replace function partition_mgmt.period_granularity(p_table_key text, p_program_id uuid, p_site_id uuid)
returns text
language sql stable
set search_path = ''
as $$
  select case when g = 'none' then 'month' else g end
  from (select coalesce(
          (select x.granularity from partition_mgmt.site_granularity x where x.table_key = p_table_key and x.site_id = p_site_id),
          (select case when m.tree_shape = 'literal' then m.default_granularity end from partition_mgmt.managed_tables m where m.table_key = p_table_key),
          (select r.granularity from partition_mgmt.partition_registry r
           where r.table_key = p_table_key and r.level = 'site' and not r.is_default and r.program_id = p_program_id and r.site_id = p_site_id),
          'month') as g) x
$$;

-- -----------------------------------------------------------------------------
-- The tree a table's data asks for
-- -----------------------------------------------------------------------------

-- The partitions a tree holding the rows of p_source needs: 'program' rows (a program partition
-- and its DEFAULT leaf), 'site' rows (a site partition, RANGE with a DEFAULT, or a single leaf for
-- 'none') and 'period' rows (one leaf each), with the rows of the data they would hold. Sized
-- tree: what the sizing rule gives the data (see "Periods and the sizing rule"; the rate of a site
-- over the span of all its rows). Literal tree: every program and site, every period of the site's
-- granularity from the program's start. Both: periods up to the premake horizon for running
-- programs. prepare_migration creates exactly these; pre_migration_check counts them.
create or replace function partition_mgmt.plan_tree(p_table_key text, p_source regclass)
returns table (level text, program_id uuid, site_id uuid, granularity text, range_start timestamptz, rows bigint)
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
set timezone = 'UTC'
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_nullable boolean;
  v_prog text;
begin
  select not a.attnotnull into v_nullable from pg_catalog.pg_attribute a
  where a.attrelid = p_source and a.attname = c.program_column and not a.attisdropped;
  v_prog := case when v_nullable then format('coalesce(l.%1$I, (select s.program_id from public.sites s where s.site_id = l.%2$I))', c.program_column, c.site_column)
                 else format('l.%I', c.program_column) end;
  return query execute format($q$
    with sm as (      -- the data by site and month: one scan
      select %1$s as program_id, l.%2$I as site_id, date_trunc('month', l.%3$I) as month, count(*)::bigint as n,
             min(l.%3$I) as first_ts, max(l.%3$I) as last_ts
      from %4$s l where l.%2$I is not null and l.%3$I is not null
      group by 1, 2, 3
    ), known as (     -- rows of programs and sites that exist (others wait in a DEFAULT leaf)
      select sm.* from sm
      where exists (select from public.pilot_programs p where p.program_id = sm.program_id)
        and exists (select from public.sites s where s.site_id = sm.site_id)
    ), sites as (
      select k.program_id, k.site_id, sum(k.n)::bigint as rows, min(k.first_ts) as first_ts, max(k.last_ts) as last_ts
      from known k group by 1, 2
      union all       -- literal trees: every site of every program, with or without rows
      select s.program_id, s.site_id, 0, null, null from public.sites s
      where $3 = 'literal' and not exists (select from known k where k.program_id = s.program_id and k.site_id = s.site_id)
    ), decided as (
      select s.program_id, s.site_id, s.rows, s.first_ts, s.last_ts,
             $3 = 'literal' or partition_mgmt.fills_leaf(s.rows, $1) or g.granularity is not null as own,
             coalesce(g.granularity,
                      case when $3 = 'literal' then $5
                           else partition_mgmt.granularity_for_rate(s.rows, s.last_ts - s.first_ts, $1) end) as gran
      from sites s left join partition_mgmt.site_granularity g on g.table_key = $2 and g.site_id = s.site_id
    ), programs as (
      select d.program_id, sum(d.rows)::bigint as rows, bool_or(d.own) as any_own from decided d group by 1
      union all
      select p.program_id, 0, false from public.pilot_programs p
      where $3 = 'literal' and not exists (select from decided d where d.program_id = p.program_id)
    ), periods as (   -- the periods holding data, then the premake horizon
      select d.program_id, d.site_id, d.gran, b.range_start, k.n
      from decided d join known k on k.program_id = d.program_id and k.site_id = d.site_id
      cross join lateral (select (partition_mgmt.period_bounds(d.gran, k.month)).range_start where d.gran <> 'week'
                          union all    -- the weeks a month of data touches
                          select g.g from generate_series((partition_mgmt.period_bounds('week', k.first_ts)).range_start, k.last_ts,
                                                          partition_mgmt.period_length('week')) g(g) where d.gran = 'week') b(range_start)
      where d.own and d.gran <> 'none'
      union all
      select d.program_id, d.site_id, d.gran, f.f, 0
      from decided d join public.pilot_programs p on p.program_id = d.program_id
      cross join lateral generate_series(
        (partition_mgmt.period_bounds(d.gran, case when $3 = 'literal' then p.start_date::timestamptz else greatest(p.start_date::timestamptz, date_trunc('month', now())) end)).range_start,
        partition_mgmt.premake_horizon($4, p.end_date) - interval '1 microsecond',
        partition_mgmt.period_length(d.gran)) f(f)
      where d.own and d.gran <> 'none' and ($3 = 'literal' or p.end_date >= current_date)
    )
    select 'program'::text, p.program_id, null::uuid, null::text, null::timestamptz, sum(p.rows)::bigint
    from programs p group by p.program_id having partition_mgmt.fills_leaf(sum(p.rows), $1) or bool_or(p.any_own) or $3 = 'literal'
    union all
    select 'site', d.program_id, d.site_id, d.gran, null, d.rows from decided d where d.own
    union all
    select 'period', x.program_id, x.site_id, x.gran, x.range_start, sum(x.n)::bigint from periods x group by 2, 3, 4, 5
    order by 2, 3 nulls first, 5 nulls first$q$,
    v_prog, c.site_column, c.time_column, p_source)
  using c.target_rows_per_leaf, c.table_key, c.tree_shape, c.premake_months, c.default_granularity;
end
$$;

-- -----------------------------------------------------------------------------
-- Privileges: operators (postgres) and service_role only
-- -----------------------------------------------------------------------------

revoke all on function partition_mgmt.plan_tree(text, regclass)  from public, anon, authenticated;
grant execute on function partition_mgmt.plan_tree(text, regclass)  to service_role;
