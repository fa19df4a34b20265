-- =============================================================================
-- Steps bounded by time (issue 11): every maintenance step ends within step_seconds.
--
-- Each step of a maintenance run stopped at this transaction's DDL lock budget (a fifth of the
-- server's lock table). On a server whose max_locks_per_transaction was raised for the plan's
-- literal tree, that is thousands of partitions: measured with `npm run bench -- --tree literal`
-- (5M rows, the cluster at the lock setting the pre-check asked for), the first step, premake of
-- a literal gasifier tree, created partitions for more than two minutes in one transaction, and
-- hosted Supabase's 2-minute statement_timeout cancelled the nightly run before it logged a step.
-- Now:
--   * ddl_budget_exhausted() also ends a step once maintain_step's deadline has passed
--     (maintenance_settings.step_seconds, 5 s by default): the run commits and goes on, within
--     its own time budget, exactly as after a spent lock budget;
--   * the metrics refresh, one statement that cannot stop half-way, is not started when the last
--     one took longer than what is left before statement_timeout ends the run: logged as an error
--     that says what to do, so health() reports it, instead of a cancelled run.
--   * a step makes progress: premake walked every period from each program's start, checking the
--     budget before each (a read of pg_locks: 2 ms on that server's lock table) and finding each
--     next period by a scan of the registry; walking one site's 13 existing periods took 276 ms
--     there, so a 5-second step of the bench's literal gasifier tree ended before its first
--     missing partition, and the next step started over.
--     premake_site now steps over existing periods with the registry's index and checks the
--     budget only before it creates one.
-- Released migrations are history: this one replaces ddl_budget_exhausted and premake_site (0200)
-- and maintain_step (0600).
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app's statements behind it
set lock_timeout = '500ms';

alter table partition_mgmt.maintenance_settings
  add column if not exists step_seconds numeric not null default 5 check (step_seconds between 1 and 60);
comment on column partition_mgmt.maintenance_settings.step_seconds is
  'Seconds one maintenance step (one transaction of a run) may take before it stops taking new work and commits; the next step goes on.';

-- -----------------------------------------------------------------------------
-- The DDL budget: locks, and in maintenance, time (replaces 0200's)
-- -----------------------------------------------------------------------------

-- True once this transaction holds more lock slots than its DDL budget, or a maintenance step's
-- deadline has passed; remembers it in the transaction-local setting
-- partition_mgmt.budget_exhausted so callers up the stack can tell.
create or replace function partition_mgmt.ddl_budget_exhausted()
returns boolean
language plpgsql volatile
set search_path = ''
as $$
begin
  if partition_mgmt.held_locks() > partition_mgmt.ddl_lock_budget()
     or clock_timestamp() > coalesce(nullif(current_setting('partition_mgmt.step_deadline', true), '')::timestamptz, 'infinity') then
    perform set_config('partition_mgmt.budget_exhausted', 'on', true);
    return true;
  end if;
  return false;
end
$$;

-- -----------------------------------------------------------------------------
-- Premake of one site (replaces 0200's)
-- -----------------------------------------------------------------------------

-- Creates whatever is missing of a site's partitions from p_from up to p_horizon (its site
-- partition, then its periods). Existing periods are stepped over without spending the budget;
-- returns false when this transaction's DDL budget ran out before the horizon.
create or replace function partition_mgmt.premake_site(p_table_key text, p_program_id uuid, p_site_id uuid, p_from timestamptz,
  p_horizon timestamptz, p_granularity text default null)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_ts timestamptz := p_from;
  v_end timestamptz;
  v_leaf text;
begin
  perform partition_mgmt.ensure_site_partition(p_table_key, p_program_id, p_site_id, p_granularity);
  while v_ts < p_horizon loop
    select g.range_end into v_end from partition_mgmt.partition_registry g
    where g.table_key = p_table_key and g.level = 'period' and not g.is_default
      and g.program_id = p_program_id and g.site_id = p_site_id and g.range_start <= v_ts and g.range_end > v_ts;
    if v_end is null then
      if partition_mgmt.ddl_budget_exhausted() then
        return false;
      end if;
      v_leaf := partition_mgmt.ensure_period_partition(p_table_key, p_program_id, p_site_id, v_ts);
      select g.range_end into v_end from partition_mgmt.partition_registry g
      where g.table_key = p_table_key and g.level in ('site', 'period') and g.program_id = p_program_id and g.site_id = p_site_id
        and format('%I.%I', g.partition_schema, g.partition_name) = v_leaf;
      exit when v_end is null or v_end <= v_ts;   -- granularity 'none': one leaf covers all time
    end if;
    v_ts := v_end;
  end loop;
  return true;
end
$$;

-- -----------------------------------------------------------------------------
-- The metrics refresh against the run's statement_timeout
-- -----------------------------------------------------------------------------

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
-- One step of a run (replaces 0600's)
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
          v_text := partition_mgmt.refresh_metrics();
          perform partition_mgmt.log_finish(v_log, 'ok', 0, 0, null, jsonb_build_object('mode', v_text));
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
