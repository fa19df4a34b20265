-- =============================================================================
-- Partition names: a short stable alias per uuid (key_aliases) and a suffix per period, so that
-- every name fits PostgreSQL's 63 bytes and stays readable (partitions.petri_p_<alias>_s_<alias>_2025_01).
-- =============================================================================

-- -----------------------------------------------------------------------------
-- Configuration
-- -----------------------------------------------------------------------------

-- Short, stable aliases for uuids in partition names: the first 12 hex digits, a hash on a clash.
create table if not exists partition_mgmt.key_aliases (
  id     uuid primary key,
  alias  text not null unique
);

-- -----------------------------------------------------------------------------
-- Helpers
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.alias_for(p_id uuid)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_alias text;
  v_hex text := replace(p_id::text, '-', '');
  v_attempt int := 0;
  v_existing text;
begin
  select alias into v_alias from partition_mgmt.key_aliases where id = p_id;
  if v_alias is not null then
    return v_alias;
  end if;
  -- The uuid's first 12 hex digits keep names recognisable; when two ids share them (sequential
  -- or hand-made uuids often do), a 12-digit hash of the id serves instead, so every name keeps
  -- its length (<= 43 bytes with the longest prefix) and stays unique. The lock is per candidate
  -- alias, so creators of unrelated partitions never wait for each other here.
  loop
    v_alias := case when v_attempt = 0 then left(v_hex, 12) else left(md5(p_id::text || ':' || v_attempt), 12) end;
    perform pg_advisory_xact_lock(hashtextextended('partition_mgmt.alias:' || v_alias, 0));
    select alias into v_existing from partition_mgmt.key_aliases where id = p_id;
    if v_existing is not null then
      return v_existing;
    end if;
    exit when not exists (select from partition_mgmt.key_aliases where alias = v_alias);
    v_attempt := v_attempt + 1;
  end loop;
  insert into partition_mgmt.key_aliases (id, alias) values (p_id, v_alias);
  return v_alias;
end
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

-- Suffix of a period leaf's name: _2025w03, _2025_01, _2025q1, _2025.
create or replace function partition_mgmt.period_suffix(p_granularity text, p_start timestamptz)
returns text
language sql immutable
set search_path = ''
as $$
  select to_char(p_start at time zone 'UTC', case p_granularity when 'week' then 'IYYY"w"IW' when 'month' then 'YYYY_MM'
                                                                 when 'quarter' then 'YYYY"q"Q' else 'YYYY' end)
$$;
