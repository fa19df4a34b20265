-- =============================================================================
-- Migration phase 4: backfill in keyset batches, bounded rows and time per call, resumable.
-- =============================================================================

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
  v_upper uuid;
  v_lower text;
  v_filter text := 'true';
  v_t0 timestamptz := clock_timestamp();
  v_ms numeric;
  v_list text := '';
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
  -- rows without a program (nullable in the legacy table) are copied with their site's program and
  -- listed, so that the legacy table gets the NULL back through the reverse sync after the swap
  if partition_mgmt.legacy_program_nullable(p_table_key) then
    v_list := format(', listed as (insert into partition_mgmt.rows_without_program (table_key, observation_id)
                                   select %L, l.%I from src l where l.%I is null on conflict do nothing)',
                     p_table_key, c.id_column, c.program_column);
  end if;
  -- The upper bound is the n-th id after the mark, found first (through the primary key); every
  -- row in (mark, bound] is then copied, including rows inserted into that range since and rows a
  -- concurrent delete removed from the first scan's view. Rows inserted later anywhere in the key
  -- space came through the sync trigger. Two statements, so that the copy is planned with both
  -- bounds known: with the bound from a CTE the planner expected a third of the table in the range
  -- and read the whole legacy table for every batch (1.07 s of a 100-row batch at 3.9M rows).
  v_lower := case when v_from is null then 'true' else format('l.%I > $1', c.id_column) end;
  execute format('select x.%1$I from (select l.%1$I from %2$s l where %3$s and %4$s order by l.%1$I limit $2) x order by x.%1$I desc limit 1',
    c.id_column, v_legacy, v_lower, v_filter)
    into v_upper using v_from, p_batch_size;
  if v_upper is null then
    high_water := null;
  else
    execute format($q$
    with src as (
      select l.* from %2$s l where %10$s and l.%1$I <= $3 and %3$s
      for share of l
    ), ins as (
      -- in leaf order: the AFTER row events of one statement are fired in the order of the rows,
      -- and each switch to another leaf costs a search through every leaf the statement opened
      -- (ExecGetTriggerResultRel), so random ids over thousands of leaves cost O(rows x leaves)
      insert into %4$s (%5$s) select %6$s from src l order by l.%7$I, l.%8$I on conflict do nothing returning 1
    )%9$s
    select (select count(*) from src), (select count(*) from ins), $3$q$,
      c.id_column, v_legacy, v_filter, c.parent, partition_mgmt.column_list(c.parent), partition_mgmt.legacy_select_list(p_table_key, 'l'),
      c.site_column, c.time_column, v_list, v_lower)
      into rows_scanned, rows_copied, high_water using v_from, p_batch_size, v_upper;
  end if;
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
