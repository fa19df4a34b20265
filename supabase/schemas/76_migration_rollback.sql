-- =============================================================================
-- Migration phase 8: rollback (swap back with every write made since) and finalize (drop
-- <table>_old; no way back after it).
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Phase 8: rollback and finalize
-- -----------------------------------------------------------------------------

-- Empties the partitioned copy, its keys and its list of rows written without a program (nothing
-- reads it while the legacy table is live).
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
  delete from partition_mgmt.rows_without_program where table_key = p_table_key;
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
-- emptied and given back its own REPLICA IDENTITY, the Realtime change feed the swap created dropped (the swap back took it out of
-- supabase_realtime), every helper and the state row gone. The app does not read or write the
-- copy or the feed, so nothing waits for this.
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
  v_feed regclass;
  v_feed_dropped text;
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
  -- the copy's own REPLICA IDENTITY again (the sync gave it the legacy table's)
  if c.parent is not null then
    perform partition_mgmt.set_copy_replica_identity(v_key, s.copy_replica_identity)
    from partition_mgmt.migration_state s where s.table_key = v_key and s.copy_replica_identity is not null;
  end if;
  -- the feed this migration created (never a table of the project's that has its name)
  v_feed := (select s.realtime_feed from partition_mgmt.migration_state s where s.table_key = v_key);
  if exists (select from pg_catalog.pg_class where oid = v_feed) then
    v_feed_dropped := v_feed::text;
    perform partition_mgmt.run_ddl(format('drop table %s', v_feed));
    update partition_mgmt.managed_tables m set realtime_feed = null where m.table_key = v_key;
    update private.deploy_report r set action = 'removed', detail = 'finish_rollback dropped it after the rollback', at = now()
    where r.object in (format('table %s', v_feed_dropped), format('policy company_isolation_changes on %s', v_feed_dropped));
  end if;
  execute format('drop function if exists partition_mgmt.%I()', v_key || '_realtime_feed');
  perform partition_mgmt.drop_migration_helpers(v_key);
  perform partition_mgmt.log_migration(v_key, 'rolled_back', 'idle', '{}'::jsonb);
  return format('%s: the copy %s is empty%s and every helper is gone', v_key, c.parent,
    case when v_feed_dropped is not null then format(', the change feed %s is dropped', v_feed_dropped) else '' end);
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
