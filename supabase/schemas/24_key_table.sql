-- =============================================================================
-- The key table: partition_mgmt.observation_keys holds each observation_id once across the whole
-- tree (a partitioned table cannot have a unique index without its partition keys), with where the
-- row lives, so that ids stay unique and a lookup by id reads one leaf (36_read_api.sql).
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Configuration
-- -----------------------------------------------------------------------------

-- observation_id -> partition keys, for every managed table. Its primary key is what makes
-- observation_id unique across the whole tree (PostgreSQL cannot enforce that on a partitioned
-- table), and it routes statements that arrive with an id alone to one leaf.
create table if not exists partition_mgmt.observation_keys (
  table_key       text not null,
  observation_id  uuid not null,
  program_id      uuid not null,
  site_id         uuid not null,
  created_at      timestamptz not null,
  primary key (table_key, observation_id)
);
comment on table partition_mgmt.observation_keys is
  'Key table: observation_id -> (program_id, site_id, created_at). Enforces observation_id uniqueness across partitions and routes id-only statements.';

-- -----------------------------------------------------------------------------
-- The partitioned parent, derived from the live legacy table
-- -----------------------------------------------------------------------------

-- Name of the transaction-local setting in which the key move trigger records an id change (read
-- by the references of migration 0250 when the update also moved the row, which then arrives as a
-- delete).
create or replace function partition_mgmt.renamed_id_setting(p_table_key text, p_id uuid)
returns text
language sql
immutable
set search_path = ''
as $$
  select format('partition_mgmt.renamed_%s_%s', md5(p_table_key), replace(p_id::text, '-', '_'))
$$;

-- The error of a second row with an observation id the table already has.
create or replace function partition_mgmt.raise_duplicate_id(p_id_column text, p_id uuid, p_table text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'duplicate % % in %', p_id_column, p_id, p_table
    using errcode = 'unique_violation',
          detail = 'observation ids are unique across every partition of the table',
          hint = 'Use a new id, or update the existing row.';
end
$$;

-- Key-table triggers, generated per managed table with its own column names (a row trigger must
-- read NEW's fields by name; generating it keeps the per-row cost to plain field access).
--
-- An UPDATE that moves a row to another partition runs as DELETE + INSERT, and only those AFTER
-- triggers fire. So the key row follows the row in place in a BEFORE UPDATE trigger (which fires
-- on the source partition before the move): the key row of an observation that still exists is
-- never deleted, not even for an instant, which is what lets references to observation_id (see
-- partition_mgmt.carried_references) tell a move from a delete. The AFTER DELETE then only
-- deletes a key row that still carries the deleted row's keys, and the AFTER INSERT accepts an
-- existing key row that already carries the inserted row's keys (the move's second half).
--
-- The same row triggers record the daily metrics' groups of the rows a statement inserts or
-- deletes while the partitioned table is the live public.petri_observations (looked up by name
-- per row, as analytics.mark_metrics_changed does: the swap and the swap back rename the tables),
-- in place of statement triggers with transition tables on it, which cost a single-row insert
-- more than the rest of this trigger. Updates are recorded by the statement trigger
-- metrics_changed_update (04_analytics.sql).
create or replace function partition_mgmt.install_key_trigger(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_fn text := format('%s_maintain_keys', c.table_key);
  v_move_fn text := format('%s_move_keys', c.table_key);
  v_mark text := '';
begin
  if (c.source_schema, c.source_table) = ('public', 'petri_observations') then
    v_mark := format($m$
      if pg_catalog.pg_partition_root(pg_catalog.to_regclass('public.petri_observations')) is not null then
        insert into analytics.metrics_dirty (program_id, site_id, day)
        values (%%1$s.%1$I, %%1$s.%2$I, (%%1$s.%3$I at time zone 'UTC')::date)
        on conflict do nothing;
      end if;$m$, c.program_column, c.site_column, c.time_column);
  end if;
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql security definer set search_path = ''
    as $body$
    declare
      v_moving boolean := coalesce(current_setting('partition_mgmt.moving_rows', true), '') = 'on';
      v_k record;
    begin
      if tg_op = 'DELETE' then
        if not v_moving then
          delete from partition_mgmt.observation_keys
          where table_key = %2$L and observation_id = old.%3$I
            and program_id = old.%4$I and site_id = old.%5$I and created_at = old.%6$I;
          if found then   -- the observation is gone (a move keeps its key row)
            delete from partition_mgmt.rows_without_program where table_key = %2$L and observation_id = old.%3$I;
          end if;%8$s
        end if;
        return old;
      end if;
      if v_moving then
        insert into partition_mgmt.observation_keys (table_key, observation_id, program_id, site_id, created_at)
        values (%2$L, new.%3$I, new.%4$I, new.%5$I, new.%6$I)
        on conflict (table_key, observation_id) do update
          set program_id = excluded.program_id, site_id = excluded.site_id, created_at = excluded.created_at;
        return new;
      end if;
      insert into partition_mgmt.observation_keys (table_key, observation_id, program_id, site_id, created_at)
      values (%2$L, new.%3$I, new.%4$I, new.%5$I, new.%6$I)
      on conflict (table_key, observation_id) do nothing;
      if not found then
        select k.program_id, k.site_id, k.created_at into v_k from partition_mgmt.observation_keys k
        where k.table_key = %2$L and k.observation_id = new.%3$I;
        -- the same keys: the second half of a move (a true duplicate with the same keys already
        -- failed on the leaf's primary key)
        if (v_k.program_id, v_k.site_id, v_k.created_at) is distinct from (new.%4$I, new.%5$I, new.%6$I) then
          perform partition_mgmt.raise_duplicate_id(%3$L, new.%3$I, %7$L);
        end if;
      end if;%9$s
      return new;
    end
    $body$
    $f$, v_fn, c.table_key, c.id_column, c.program_column, c.site_column, c.time_column, c.partitioned_table,
    format(v_mark, 'old'), format(v_mark, 'new'));
  execute format('revoke all on function partition_mgmt.%I() from public', v_fn);

  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql security definer set search_path = ''
    as $body$
    begin
      if coalesce(current_setting('partition_mgmt.moving_rows', true), '') = 'on' then
        return new;
      end if;
      update partition_mgmt.observation_keys
      set observation_id = new.%3$I, program_id = new.%4$I, site_id = new.%5$I, created_at = new.%6$I
      where table_key = %2$L and observation_id = old.%3$I;
      if new.%3$I <> old.%3$I then
        perform set_config(partition_mgmt.renamed_id_setting(%2$L, old.%3$I), new.%3$I::text, true);
        update partition_mgmt.rows_without_program set observation_id = new.%3$I
        where table_key = %2$L and observation_id = old.%3$I;
      end if;
      return new;
    exception when unique_violation then
      perform partition_mgmt.raise_duplicate_id(%3$L, new.%3$I, %7$L);
    end
    $body$
    $f$, v_move_fn, c.table_key, c.id_column, c.program_column, c.site_column, c.time_column, c.partitioned_table);
  execute format('revoke all on function partition_mgmt.%I() from public', v_move_fn);
end
$install$;

-- Puts both key triggers on a managed table's partitioned parent (the leaves inherit them).
create or replace function partition_mgmt.attach_key_triggers(p_table_key text, p_parent regclass)
returns void
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
begin
  perform partition_mgmt.install_key_trigger(c.table_key);
  execute format('create trigger %I after insert or delete on %s for each row execute function partition_mgmt.%I()',
    'zz_maintain_observation_keys', p_parent, c.table_key || '_maintain_keys');
  execute format('create trigger %1$I before update of %2$I, %3$I, %4$I, %5$I on %6$s for each row
                  when ((old.%2$I, old.%3$I, old.%4$I, old.%5$I) is distinct from (new.%2$I, new.%3$I, new.%4$I, new.%5$I))
                  execute function partition_mgmt.%7$I()',
    'zz_move_observation_keys', c.id_column, c.program_column, c.site_column, c.time_column, p_parent, c.table_key || '_move_keys');
end
$$;
