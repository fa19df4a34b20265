-- =============================================================================
-- Migration phase 3: sync triggers, legacy -> partitioned before the swap and partitioned ->
-- legacy after it (so a rollback loses nothing). Start: start_sync; undo: stop_sync.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Phase 3: sync triggers (legacy -> partitioned before the swap, partitioned -> legacy after it)
-- Generated per table with its column names, SECURITY DEFINER (the app's role writes the legacy
-- table; the copy and the key table must be written whatever its privileges and policies).
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.install_sync_functions(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
  v_cols text := partition_mgmt.column_list(v_parent);
  v_new text;
  v_set_parent text;
  v_parent_name text := format('%I.%I', c.source_schema, c.partitioned_table);
  v_nullable boolean;
begin
  select string_agg(case when a.attname = c.program_column then 'v_program' else format('new.%I', a.attname) end, ', ' order by a.attnum),
         string_agg(format('%1$I = excluded.%1$I', a.attname), ', ' order by a.attnum)
           filter (where a.attname not in (c.id_column, c.program_column, c.site_column, c.time_column))
    into v_new, v_set_parent
  from pg_catalog.pg_attribute a where a.attrelid = v_parent and a.attnum > 0 and not a.attisdropped;
  v_nullable := partition_mgmt.legacy_program_nullable(p_table_key);

  -- legacy -> partitioned. A key change (or a delete) removes the old version first, found through
  -- the key table, so the key table never sees the id twice.
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql security definer set search_path = ''
    as $body$
    declare
      v_k record;
      v_program uuid;
    begin
      if tg_op <> 'INSERT' then
        if tg_op = 'DELETE' or (old.%3$I, old.%4$I, old.%5$I, old.%6$I) is distinct from (new.%3$I, new.%4$I, new.%5$I, new.%6$I) then
          select k.program_id, k.site_id, k.created_at into v_k from partition_mgmt.observation_keys k
          where k.table_key = %7$L and k.observation_id = old.%3$I;
          if found then
            delete from %2$s t where t.%3$I = old.%3$I and t.%4$I = v_k.program_id and t.%5$I = v_k.site_id and t.%6$I = v_k.created_at;
          end if;
        end if;
        if tg_op = 'DELETE' then
          return null;
        end if;
      end if;
      v_program := %8$s;
      if v_program is null then
        raise exception 'cannot place %% %% in %%: %% is NULL and site %% has no program', %9$L, new.%3$I, %2$L, %10$L, new.%5$I
          using errcode = 'not_null_violation', hint = 'Set the program of the row (or of its site).';
      end if;
      insert into %2$s (%11$s) values (%12$s)
      on conflict (%3$I, %4$I, %5$I, %6$I) do update set %13$s;%14$s
      return null;
    end
    $body$
    $f$, p_table_key || '_sync_to_partitioned', v_parent_name, c.id_column, c.program_column, c.site_column, c.time_column,
      p_table_key,
      case when v_nullable then format('coalesce(new.%I, (select s.program_id from public.sites s where s.site_id = new.%I))', c.program_column, c.site_column)
           else format('new.%I', c.program_column) end,
      c.source_table, c.program_column, v_cols, v_new, coalesce(v_set_parent, format('%1$I = excluded.%1$I', c.id_column)),
      -- a row without a program is listed (partition_mgmt.rows_without_program), so that the
      -- legacy table gets its NULL back through the reverse sync once the copy is live; a key
      -- change deleted the old version above, and with it its entry
      case when v_nullable then format('
      if new.%1$I is null then
        insert into partition_mgmt.rows_without_program (table_key, observation_id) values (%2$L, new.%3$I) on conflict do nothing;
      elsif tg_op = ''UPDATE'' and old.%1$I is null then
        delete from partition_mgmt.rows_without_program where table_key = %2$L and observation_id = new.%3$I;
      end if;', c.program_column, p_table_key, c.id_column) else '' end);

  execute format('revoke all on function partition_mgmt.%I() from public', p_table_key || '_sync_to_partitioned');
  perform partition_mgmt.set_reverse_sync(p_table_key, false);
end
$install$;

-- The reverse sync, partitioned (live after the swap) -> legacy (<table>_old): a row moved to
-- another partition arrives as DELETE + INSERT, an id change as UPDATE. Its trigger is put on the
-- copy when the sync starts (cloning a trigger onto every leaf takes time that the swap's lock
-- must not); until the swap the function does nothing, and the swap only replaces its body (one
-- catalog row). Deactivated again by the swap back.
create or replace function partition_mgmt.set_reverse_sync(p_table_key text, p_active boolean)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
  v_legacy_name text := format('%I.%I', c.source_schema, c.source_table || '_old');
  v_nullable boolean;
begin
  if not p_active then
    execute format($f$
      create or replace function partition_mgmt.%1$I() returns trigger
      language plpgsql security definer set search_path = ''
      as $body$
      begin
        return null;   -- dormant: the partitioned table is not the live table (see set_reverse_sync)
      end
      $body$$f$, p_table_key || '_sync_to_legacy');
  else
    v_nullable := partition_mgmt.legacy_program_nullable(p_table_key);
    execute format($f$
      create or replace function partition_mgmt.%1$I() returns trigger
      language plpgsql security definer set search_path = ''
      as $body$
      begin
        if tg_op = 'DELETE' or old.%3$I is distinct from new.%3$I then
          delete from %2$s t where t.%3$I = old.%3$I;
          if tg_op = 'DELETE' then
            return null;
          end if;
        end if;
        insert into %2$s (%4$s) values (%5$s)
        on conflict (%3$I) do update set %6$s;
        return null;
      end
      $body$
      $f$, p_table_key || '_sync_to_legacy', v_legacy_name, c.id_column, partition_mgmt.column_list(v_parent),
        -- a row the app wrote without a program has the NULL back in the legacy table
        (select string_agg(case when a.attname = c.program_column and v_nullable
                                then format('case when exists (select from partition_mgmt.rows_without_program w where w.table_key = %L and w.observation_id = new.%I) then null else new.%I end',
                                            p_table_key, c.id_column, a.attname)
                                else format('new.%I', a.attname) end, ', ' order by a.attnum)
         from pg_catalog.pg_attribute a
         where a.attrelid = v_parent and a.attnum > 0 and not a.attisdropped),
        (select string_agg(format('%1$I = excluded.%1$I', a.attname), ', ' order by a.attnum) from pg_catalog.pg_attribute a
         where a.attrelid = v_parent and a.attnum > 0 and not a.attisdropped and a.attname <> c.id_column));
  end if;
  execute format('revoke all on function partition_mgmt.%I() from public', p_table_key || '_sync_to_legacy');
end
$install$;

-- What the swap needs on every leaf of the copy is put there before the copy is filled, dormant,
-- so that the swap's ACCESS EXCLUSIVE lock does not last as long as cloning triggers onto every
-- leaf takes: the reverse sync (its function does nothing until the swap) and the ON DELETE / ON
-- UPDATE actions of the foreign keys that reference the table (they act only once the copy is the
-- live table).
create or replace function partition_mgmt.install_copy_triggers(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
begin
  if not exists (select from pg_catalog.pg_trigger where tgrelid = v_parent and tgname = 'partition_mgmt_sync_to_legacy') then
    perform partition_mgmt.run_ddl(format('create trigger partition_mgmt_sync_to_legacy after insert or update or delete on %s for each row execute function partition_mgmt.%I()',
      v_parent, p_table_key || '_sync_to_legacy'));
  end if;
  perform partition_mgmt.preinstall_reference_actions(p_table_key, partition_mgmt.legacy_table(p_table_key), v_parent);
  perform partition_mgmt.carry_replica_identity(p_table_key);
end
$$;
create or replace function partition_mgmt.start_sync(p_table text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  v_legacy regclass;
begin
  if partition_mgmt.migration_phase(v_key) <> 'prepared' then
    return format('%s: %s', v_key, partition_mgmt.migration_phase(v_key));
  end if;
  v_legacy := partition_mgmt.legacy_table(v_key);
  perform partition_mgmt.install_sync_functions(v_key);
  perform partition_mgmt.install_copy_triggers(v_key);
  -- CREATE TRIGGER waits for the writers in flight (SHARE ROW EXCLUSIVE): every row is then either
  -- committed before the trigger (the backfill copies it) or written through it.
  perform partition_mgmt.run_ddl(format('create trigger partition_mgmt_sync_to_partitioned after insert or update or delete on %s for each row execute function partition_mgmt.%I()',
    v_legacy, v_key || '_sync_to_partitioned'));
  perform partition_mgmt.set_migration_phase(v_key, array['prepared'], 'syncing');
  return format('%s: syncing (trigger on %s)', v_key, v_legacy);
end
$$;
