-- =============================================================================
-- Migration phase 5: monitoring (progress, rate, ETA, last error) for the CLI, HTTP and SQL.
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Phase 5: monitoring
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.monitor_migration(p_table text default null)
returns table (table_key text, phase text, rows_copied bigint, rows_scanned bigint, rows_total bigint, percent numeric,
               rows_per_second numeric, eta interval, pending_in_defaults bigint, batches bigint, last_batch_ms numeric,
               postpone_swap boolean, swap_lock_ms numeric, last_error text, started_at timestamptz, updated_at timestamptz)
language plpgsql stable
set search_path = ''
as $$
declare
  v_key text := case when p_table is null then null else partition_mgmt.resolve_table_key(p_table) end;
  m partition_mgmt.managed_tables;
  s partition_mgmt.migration_state;
  d record;
  v_n bigint;
begin
  for m in select * from partition_mgmt.managed_tables mt where v_key is null or mt.table_key = v_key order by mt.table_key loop
    select * into s from partition_mgmt.migration_state x where x.table_key = m.table_key;
    table_key := m.table_key;
    phase := coalesce(s.phase, 'idle');
    rows_copied := coalesce(s.rows_copied, 0);
    rows_scanned := coalesce(s.rows_scanned, 0);
    rows_total := s.rows_total;
    percent := case when s.phase in ('backfilled', 'validated', 'swapped') then 100
                    when coalesce(s.rows_total, 0) = 0 then case when s.phase is null then 0 else 0 end
                    else least(100, round(100.0 * s.rows_scanned / s.rows_total, 1)) end;
    rows_per_second := case when coalesce(s.backfill_ms, 0) > 0 then round(s.rows_scanned / (s.backfill_ms / 1000.0)) end;
    eta := case when s.phase in ('syncing', 'backfilling') and s.backfill_started_at is not null and s.rows_scanned > 0 and s.rows_total > s.rows_scanned
                then (now() - s.backfill_started_at) * ((s.rows_total - s.rows_scanned)::numeric / s.rows_scanned)
                when s.phase in ('backfilled', 'validated', 'swapped') then interval '0' end;
    pending_in_defaults := 0;
    if m.parent is not null then
      for d in select r.partition_schema, r.partition_name from partition_mgmt.partition_registry r
               where r.table_key = m.table_key and r.is_default and partition_mgmt.is_waiting_room(m.tree_shape, r.level) loop
        execute format('select count(*) from %I.%I', d.partition_schema, d.partition_name) into v_n;
        pending_in_defaults := pending_in_defaults + v_n;
      end loop;
    end if;
    batches := coalesce(s.batches, 0);
    last_batch_ms := s.last_batch_ms;
    postpone_swap := s.postpone_swap;
    swap_lock_ms := s.swap_lock_ms;
    last_error := s.last_error;
    started_at := s.started_at;
    updated_at := s.updated_at;
    return next;
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Privileges: operators (postgres) and service_role only
-- -----------------------------------------------------------------------------

revoke all on function partition_mgmt.monitor_migration(text)  from public, anon, authenticated;
grant execute on function partition_mgmt.monitor_migration(text)  to service_role;
