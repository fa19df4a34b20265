-- =============================================================================
-- The orchestrator: the phase sequence in one place (migration_next_step, migration_step,
-- migration_runner for psql), the plan's safe_migrate_table, the offline option, and who may call
-- the phases.
-- =============================================================================

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
    detail := format('ACCESS EXCLUSIVE on %s and the copy (lock_timeout 1s, 10 tries with backoff), final count, renames (%s -> %s_old, copy -> %s), policies, grants, triggers, views carried, the table''s membership of publications changed as the pre-check''s publications row says (never a publication''s options); reverse sync keeps %s_old exact%s',
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
  if partition_mgmt.legacy_program_nullable(v_key) then   -- (see backfill_batch)
    execute format('insert into partition_mgmt.rows_without_program (table_key, observation_id) select %L, l.%I from %s l where l.%I is null',
      v_key, c.id_column, v_legacy, c.program_column);
  end if;
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
--
-- A step's defaults are step_defaults(), in one place: migration_next_step, migration_step and
-- migration_runner take them for every parameter left null, the admin action step has them as its
-- defaults (0700), the TypeScript contract's ADMIN_DEFAULTS.step says the same and the driver
-- passes null (test/edge/admin-actions-contract.test.ts and test/migration/migration-cycle.test.ts hold them to it).
-- -----------------------------------------------------------------------------

-- swap false: a step never swaps unless asked (the swap renames the app's table under ACCESS
-- EXCLUSIVE; it is taken on purpose, in a session of its own). batch_size 5000: the most rows of
-- one backfill batch; the batch itself is sized by time (partition_mgmt.backfill_batch_ms), so
-- this only caps it, and it is the backfill action's batch size too. lock_timeout and attempts:
-- the swap's wait for ACCESS EXCLUSIVE, as swap_tables takes it (10 waits of 1 s, with backoff,
-- well inside an edge function's 150 s request).
create or replace function partition_mgmt.step_defaults()
returns jsonb
language sql immutable
set search_path = ''
as $$ select '{"swap": false, "batch_size": 5000, "lock_timeout": "1s", "attempts": 10}'::jsonb $$;
comment on function partition_mgmt.step_defaults() is
  'The defaults of a migration step (swap, batch_size, lock_timeout, attempts): migration_step, migration_next_step and migration_runner take them for a null parameter, and the admin action step has them as its defaults.';

-- prepare, sync, backfill, validate, swap (only when p_swap) or done.
create or replace function partition_mgmt.migration_next_step(p_table text, p_swap boolean default null)
returns text
language sql stable
set search_path = ''
as $$
  select case partition_mgmt.migration_phase(partition_mgmt.resolve_table_key(p_table))
    when 'idle' then 'prepare' when 'preparing' then 'prepare' when 'rolled_back' then 'prepare'
    when 'prepared' then 'sync'
    when 'syncing' then 'backfill' when 'backfilling' then 'backfill'
    when 'backfilled' then 'validate'
    when 'validated' then case when coalesce(p_swap, (partition_mgmt.step_defaults() ->> 'swap')::boolean) then 'swap' else 'done' end
    else 'done' end
$$;

-- A null swap, batch size, lock_timeout or attempts is step_defaults()'s.
create or replace function partition_mgmt.migration_step(p_table text, p_swap boolean default null, p_batch_size integer default null,
  p_max_batches integer default 1, p_max_seconds numeric default null, p_lock_timeout text default null, p_attempts integer default null)
returns table (step text, phase text, next_step text, result jsonb)
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  v_defaults constant jsonb := partition_mgmt.step_defaults();
  v_swap constant boolean := coalesce(p_swap, (v_defaults ->> 'swap')::boolean);
  v_batch_size constant integer := coalesce(p_batch_size, (v_defaults ->> 'batch_size')::integer);
  v_lock_timeout constant text := coalesce(p_lock_timeout, v_defaults ->> 'lock_timeout');
  v_attempts constant integer := coalesce(p_attempts, (v_defaults ->> 'attempts')::integer);
  v_rows jsonb;
  v_bad jsonb;
  v_target numeric;
  v_size integer;
begin
  if v_batch_size < 1 or p_max_batches is null or p_max_batches < 1 then
    raise exception 'batch size and batches per step must be positive, got % and %', v_batch_size, p_max_batches
      using hint = format('Pass a positive p_batch_size (or null for the default, %s) and p_max_batches.', v_defaults ->> 'batch_size');
  end if;
  step := partition_mgmt.migration_next_step(v_key, v_swap);
  case step
  when 'prepare' then
    result := jsonb_build_object('message', partition_mgmt.prepare_migration(v_key));
  when 'sync' then
    result := jsonb_build_object('message', partition_mgmt.start_sync(v_key));
  when 'backfill' then
    -- A batch holds FOR SHARE on its rows until it commits: an app update of one of them waits
    -- for the whole batch. So the batch is sized by time, not by rows: from the last batch's
    -- rows and milliseconds toward partition_mgmt.backfill_batch_ms (default 250 ms), between
    -- 100 rows (or the batch size, if smaller) and the batch size, starting at 1,000.
    v_target := coalesce(nullif(current_setting('partition_mgmt.backfill_batch_ms', true), '')::numeric, 250);
    select case when s.last_batch_rows is null or coalesce(s.last_batch_ms, 0) <= 0 then least(v_batch_size, 1000)
                else greatest(least(100, v_batch_size), least(v_batch_size, round(s.last_batch_rows * least(2.0, v_target / s.last_batch_ms))))::integer end
      into v_size
    from partition_mgmt.migration_state s where s.table_key = v_key;
    select to_jsonb(m) || jsonb_build_object('batch_size', v_size) into result
    from partition_mgmt.migrate_to_partitioned(coalesce(v_size, least(v_batch_size, 1000)), null, v_key, p_max_batches, p_max_seconds) m;
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
    from partition_mgmt.swap_tables(v_key, v_lock_timeout, v_attempts) w;
  else
    result := null;
  end case;
  phase := partition_mgmt.migration_phase(v_key);
  next_step := partition_mgmt.migration_next_step(v_key, v_swap);
  return next;
end
$$;

-- The statement that runs the whole migration of p_table in psql or a pg_cron job, committing
-- after every step (select partition_mgmt.migration_runner('petri_observations', p_swap => true) \gexec).
-- It stops before the swap unless the swap is its first step: run it again (a new session) to swap.
-- A null swap or batch size is step_defaults()'s, written into the statement.
create or replace function partition_mgmt.migration_runner(p_table text, p_swap boolean default null, p_batch_size integer default null,
  p_throttle_ms integer default 0)
returns text
language plpgsql stable
set search_path = ''
as $fn$
declare
  v_swap constant boolean := coalesce(p_swap, (partition_mgmt.step_defaults() ->> 'swap')::boolean);
  v_batch_size constant integer := coalesce(p_batch_size, (partition_mgmt.step_defaults() ->> 'batch_size')::integer);
begin
  if v_batch_size < 1 or p_throttle_ms is null or p_throttle_ms < 0 then
    raise exception 'batch size must be positive and throttle a non-negative number of milliseconds, got % and %', v_batch_size, p_throttle_ms
      using hint = format('Pass a positive p_batch_size (or null for the default, %s) and p_throttle_ms >= 0.', partition_mgmt.step_defaults() ->> 'batch_size');
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
$f$, partition_mgmt.resolve_table_key(p_table), v_swap::text, v_batch_size, p_throttle_ms);
end
$fn$;

-- -----------------------------------------------------------------------------
-- Privileges: operators (postgres) and service_role only
-- -----------------------------------------------------------------------------

revoke all on function partition_mgmt.pre_migration_check(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.prepare_migration(text, text)  from public, anon, authenticated;
revoke all on function partition_mgmt.start_sync(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.migrate_to_partitioned(integer, uuid, text, integer, numeric)  from public, anon, authenticated;
revoke all on function partition_mgmt.post_migration_validation(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.swap_tables(text, text, integer, text)  from public, anon, authenticated;
revoke all on function partition_mgmt.rollback_migration(text, text, integer)  from public, anon, authenticated;
revoke all on function partition_mgmt.finalize_migration(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.set_postpone_swap(text, boolean)  from public, anon, authenticated;
revoke all on function partition_mgmt.safe_migrate_table(text, boolean, boolean)  from public, anon, authenticated;
revoke all on function partition_mgmt.offline_migrate_table(text, text, integer)  from public, anon, authenticated;
revoke all on function partition_mgmt.migration_in_progress(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.legacy_table(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.finish_rollback(text)  from public, anon, authenticated;
revoke all on function partition_mgmt.migration_next_step(text, boolean)  from public, anon, authenticated;
revoke all on function partition_mgmt.migration_step(text, boolean, integer, integer, numeric, text, integer)  from public, anon, authenticated;
revoke all on function partition_mgmt.migration_runner(text, boolean, integer, integer)  from public, anon, authenticated;
revoke all on function partition_mgmt.step_defaults()  from public, anon, authenticated;
grant execute on function partition_mgmt.pre_migration_check(text)  to service_role;
grant execute on function partition_mgmt.prepare_migration(text, text)  to service_role;
grant execute on function partition_mgmt.start_sync(text)  to service_role;
grant execute on function partition_mgmt.migrate_to_partitioned(integer, uuid, text, integer, numeric)  to service_role;
grant execute on function partition_mgmt.post_migration_validation(text)  to service_role;
grant execute on function partition_mgmt.swap_tables(text, text, integer, text)  to service_role;
grant execute on function partition_mgmt.rollback_migration(text, text, integer)  to service_role;
grant execute on function partition_mgmt.finalize_migration(text)  to service_role;
grant execute on function partition_mgmt.set_postpone_swap(text, boolean)  to service_role;
grant execute on function partition_mgmt.safe_migrate_table(text, boolean, boolean)  to service_role;
grant execute on function partition_mgmt.offline_migrate_table(text, text, integer)  to service_role;
grant execute on function partition_mgmt.migration_in_progress(text)  to service_role;
grant execute on function partition_mgmt.legacy_table(text)  to service_role;
grant execute on function partition_mgmt.finish_rollback(text)  to service_role;
grant execute on function partition_mgmt.migration_next_step(text, boolean)  to service_role;
grant execute on function partition_mgmt.migration_step(text, boolean, integer, integer, numeric, text, integer)  to service_role;
grant execute on function partition_mgmt.migration_runner(text, boolean, integer, integer)  to service_role;
grant execute on function partition_mgmt.step_defaults()  to service_role;
comment on function partition_mgmt.safe_migrate_table(text, boolean, boolean) is
  'Dry run (default): the plan (checks, partitions to create, rows, lock steps) without changing anything. Otherwise advances the online migration as far as one transaction may: prepare, sync, validate, and the swap unless postponed.';
comment on function partition_mgmt.migrate_to_partitioned(integer, uuid, text, integer, numeric) is
  'Backfill step: up to p_max_batches keyset batches (FOR SHARE on the batch rows, ON CONFLICT DO NOTHING) in the caller''s transaction; commit between calls. Resumes from the recorded high-water mark.';
comment on function partition_mgmt.swap_tables(text, text, integer, text) is
  'Swaps the validated partitioned copy in under the legacy name (lock_timeout with retries, final count under the lock), carrying policies, grants, triggers, views; the table''s membership of publications changes as partition_mgmt.publication_plan says (never a publication''s options; listed in private.deploy_report); the legacy table stays in sync as <table>_old.';
comment on function partition_mgmt.rollback_migration(text, text, integer) is
  'Undoes the migration from any phase: before the swap drops the sync trigger and the copy''s rows; after it swaps back with every write made since. Leaves no trigger, state or helper.';
comment on function partition_mgmt.finalize_migration(text) is
  'After the swap, on request only: drops <table>_old, the reverse sync trigger and every helper.';

-- Functions of this migration are executable by those granted above only (PostgreSQL grants
-- EXECUTE to PUBLIC by default, and per-schema default privileges cannot take that away).
revoke execute on all routines in schema partition_mgmt from public;
