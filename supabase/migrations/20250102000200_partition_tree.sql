-- =============================================================================
-- Partition tree (the plan's 004): Program (LIST) -> Site (LIST) -> Period (RANGE).
--
-- partition_mgmt owns the tree: which tables are managed (data, not code branches), the registry of
-- every partition, its sizing by the data and the lock budget, creation (on program/site insert and
-- on demand), the key table that keeps observation_id unique across the tree and routes id-only
-- statements, and the stats and validation maintenance and operators read. Partitions live in the
-- unexposed schema `partitions`, each with RLS on and no privileges for anon or authenticated.
-- =============================================================================

-- DDL that would wait for a lock gives up quickly instead of queueing the app behind it (the
-- app's tables are locked only through private.lock_for_ddl, at the end of the file)
set lock_timeout = '500ms';

create schema if not exists partition_mgmt;
create schema if not exists partitions;
comment on schema partition_mgmt is 'Partition management: configuration, registry, creation, maintenance and online migration of the observation tables.';
comment on schema partitions is 'Child partitions of the partitioned observation tables. Not exposed through the Data API.';

revoke all on schema partition_mgmt from public, anon, authenticated;
revoke all on schema partitions from public, anon, authenticated;
grant usage on schema partition_mgmt to service_role;
alter default privileges in schema partition_mgmt revoke execute on functions from public;
alter default privileges in schema partitions revoke all on tables from public;

-- -----------------------------------------------------------------------------
-- Configuration
-- -----------------------------------------------------------------------------
create table if not exists partition_mgmt.managed_tables (
  table_key            text primary key check (table_key ~ '^[a-z][a-z0-9_]{0,15}$'),
  source_schema        text not null default 'public',
  source_table         text not null,
  partitioned_table    text not null,
  -- short prefix of every partition name (keeps names far below PostgreSQL's 63-byte limit)
  name_prefix          text not null check (name_prefix ~ '^[a-z][a-z0-9]{0,7}$'),
  id_column            text not null default 'observation_id',
  program_column       text not null default 'program_id',
  site_column          text not null default 'site_id',
  time_column          text not null default 'created_at',
  -- 'sized': partitions follow the data (a program or site gets partitions of its own once its
  -- rows fill a leaf; until then it shares its parent's DEFAULT leaf; periods as long as it takes
  -- the site to fill a leaf). 'literal': the plan's tree, every program, every site, every period
  -- of default_granularity, created when the program or site is inserted.
  tree_shape           text not null default 'sized' check (tree_shape in ('sized', 'literal')),
  target_rows_per_leaf bigint not null default 100000 check (target_rows_per_leaf >= 10),
  default_granularity  text not null default 'month' check (default_granularity in ('week', 'month', 'quarter', 'year', 'none')),
  premake_months       integer not null default 3 check (premake_months between 0 and 36),
  leaf_budget          integer not null default 5000 check (leaf_budget > 0),
  -- pre_migration_check() blocks, and health() warns about, a tree on which fewer statements
  -- without the partition keys than this could run at once before the lock table is full
  min_keyless_statements integer not null default 20 check (min_keyless_statements >= 1),
  -- the partitioned table's new ids in time order (UUID version 7, time_ordered_uuid_default())
  -- where the legacy table's id default is a random UUID; false keeps the legacy default
  time_ordered_ids     boolean not null default true,
  -- the partitioned parent once created; regclass follows it through the swap's renames
  parent               regclass,
  created_at           timestamptz not null default now(),
  unique (name_prefix),
  unique (source_schema, source_table)
);
comment on table partition_mgmt.managed_tables is
  'One row per table partitioned Program -> Site -> Period. Adding a row (and calling create_partitioned_table) is all it takes to manage another table.';
comment on column partition_mgmt.managed_tables.tree_shape is
  'sized (default): a program or site gets partitions of its own only once its rows fill a leaf (target_rows_per_leaf), with periods as long as it takes the site to fill one; until then it shares its parent''s DEFAULT leaf. literal: the plan''s tree, every site, every period of default_granularity.';
comment on column partition_mgmt.managed_tables.time_ordered_ids is
  'true (default): where the legacy id column defaults to a random UUID (gen_random_uuid(), uuid_generate_v4()), the partitioned table defaults to a UUID of version 7 (the creation time in milliseconds, then 74 random bits; partition_mgmt.time_ordered_uuid_default()), so the two indexes every insert writes by id (the leaf''s primary key and observation_keys) take new ids at their right edge. false: the legacy default. Read when the partitioned table is created (prepare_migration).';
comment on column partition_mgmt.managed_tables.target_rows_per_leaf is
  'Rows a leaf should hold (sized trees): the promotion threshold of a program or site, and the period length of a site (the shortest period that holds this many rows at its rate).';

create table if not exists partition_mgmt.site_granularity (
  table_key    text not null references partition_mgmt.managed_tables (table_key) on delete cascade,
  site_id      uuid not null,
  granularity  text not null check (granularity in ('week', 'month', 'quarter', 'year', 'none')),
  updated_at   timestamptz not null default now(),
  primary key (table_key, site_id)
);
comment on table partition_mgmt.site_granularity is
  'Per-site time split pinned by an operator (weekly for a high-volume site, none for a tiny one). In a sized tree a pinned site gets partitions of its own whatever its rows. Applies to partitions created after the setting.';

-- Short, stable aliases for uuids in partition names: the first 12 hex digits, a hash on a clash.
create table if not exists partition_mgmt.key_aliases (
  id     uuid primary key,
  alias  text not null unique
);

create table if not exists partition_mgmt.partition_registry (
  partition_schema  text not null,
  partition_name    text not null,
  table_key         text not null references partition_mgmt.managed_tables (table_key) on delete cascade,
  level             text not null check (level in ('program', 'site', 'period')),
  is_default        boolean not null default false,
  is_leaf           boolean not null,
  program_id        uuid,
  site_id           uuid,
  granularity       text check (granularity in ('week', 'month', 'quarter', 'year', 'none')),
  range_start       timestamptz,
  range_end         timestamptz,
  created_at        timestamptz not null default now(),
  primary key (partition_schema, partition_name),
  check (range_end is null or range_end > range_start)
);
create index if not exists partition_registry_lookup_idx
  on partition_mgmt.partition_registry (table_key, level, program_id, site_id, range_start);
comment on table partition_mgmt.partition_registry is
  'Every partition of every managed table: its level, program, site and bounds. Stats and maintenance read this.';

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

-- Observations the app wrote without program_id where the legacy table lets it (gasifier: older
-- app versions send only the site). The partitioned table cannot hold a NULL there (a partition
-- key in the primary key), so it holds the site's program (see "Rows written without a program");
-- this list stands for the NULL: a listed row's program follows its site, and the reverse sync
-- into <table>_old, and so a rollback, gives the legacy table back the NULL the app wrote.
create table if not exists partition_mgmt.rows_without_program (
  table_key       text not null,
  observation_id  uuid not null,
  primary key (table_key, observation_id)
);
revoke all on partition_mgmt.rows_without_program from public, anon, authenticated;
grant select on partition_mgmt.rows_without_program to service_role;
comment on table partition_mgmt.rows_without_program is
  'Observations written without program_id (nullable in the legacy table): the partitioned table holds their site''s program (it follows the site), the legacy table (and <table>_old, through the reverse sync) the NULL.';

insert into partition_mgmt.managed_tables (table_key, source_table, partitioned_table, name_prefix)
values ('petri', 'petri_observations', 'petri_observations_partitioned', 'petri'),
       ('gasifier', 'gasifier_observations', 'gasifier_observations_partitioned', 'gas')
on conflict (table_key) do nothing;

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

-- Suffix of a period leaf's name: _2025w03, _2025_01, _2025q1, _2025.
create or replace function partition_mgmt.period_suffix(p_granularity text, p_start timestamptz)
returns text
language sql immutable
set search_path = ''
as $$
  select to_char(p_start at time zone 'UTC', case p_granularity when 'week' then 'IYYY"w"IW' when 'month' then 'YYYY_MM'
                                                                 when 'quarter' then 'YYYY"q"Q' else 'YYYY' end)
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
-- Helpers
-- -----------------------------------------------------------------------------

-- The managed table's configuration, or an error naming what is known.
create or replace function partition_mgmt.config(p_table_key text)
returns partition_mgmt.managed_tables
language plpgsql stable
set search_path = ''
as $$
declare
  v partition_mgmt.managed_tables;
begin
  select * into v from partition_mgmt.managed_tables where table_key = p_table_key;
  if not found then
    raise exception 'unknown managed table "%"', p_table_key
      using hint = format('Known tables: %s. Register one by inserting into partition_mgmt.managed_tables.',
        (select string_agg(table_key, ', ' order by table_key) from partition_mgmt.managed_tables));
  end if;
  return v;
end
$$;

-- Accepts a table key ('petri') or a table name ('petri_observations', with or without schema).
create or replace function partition_mgmt.resolve_table_key(p_table text)
returns text
language plpgsql stable
set search_path = ''
as $$
declare
  v_key text;
begin
  select table_key into v_key from partition_mgmt.managed_tables
  where p_table in (table_key, source_table, source_schema || '.' || source_table,
                    partitioned_table, source_schema || '.' || partitioned_table);
  if v_key is null then
    raise exception 'table "%" is not managed by partition_mgmt', p_table
      using hint = format('Use one of: %s.', (select string_agg(format('%s (%s)', table_key, source_table), ', ' order by table_key)
                                             from partition_mgmt.managed_tables));
  end if;
  return v_key;
end
$$;

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

-- Transaction-scoped advisory lock on a program or a site, shared by every managed table:
-- concurrent creators of the same partitions serialise here and the second finds the first one's
-- work. Keyed without the table so that one creator working through several tables (the insert
-- trigger) and another working on one of them always take the locks in the same order
-- (program, then site): no deadlock.
create or replace function partition_mgmt.lock_key(p_table_key text, p_level text, p_a uuid, p_b uuid default null)
returns void
language sql
set search_path = ''
as $$
  select pg_advisory_xact_lock(hashtextextended(concat_ws(':', 'partition_mgmt', p_level, p_a, p_b), 0));
$$;

-- Runs DDL against a possibly hot table with a short lock_timeout, retrying with exponential
-- backoff and jitter, so a waiting ACCESS EXCLUSIVE/SHARE UPDATE EXCLUSIVE request never queues
-- application statements for long. The caller's lock_timeout is restored afterwards. Without
-- arguments, the transaction-local settings partition_mgmt.lock_timeout and
-- partition_mgmt.ddl_attempts apply (maintenance sets them from maintenance_settings), else
-- 500ms and 8 attempts.
create or replace function partition_mgmt.run_ddl(
  p_sql text,
  p_lock_timeout text default null,
  p_attempts int default null)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_old text := current_setting('lock_timeout');
  v_timeout text := coalesce(p_lock_timeout, nullif(current_setting('partition_mgmt.lock_timeout', true), ''), '500ms');
  v_attempts int := coalesce(p_attempts, nullif(current_setting('partition_mgmt.ddl_attempts', true), '')::int, 8);
  v_attempt int := 0;
begin
  loop
    v_attempt := v_attempt + 1;
    begin
      perform set_config('lock_timeout', v_timeout, true);
      execute p_sql;
      perform set_config('lock_timeout', v_old, true);
      return;
    exception when lock_not_available then
      perform set_config('lock_timeout', v_old, true);
      if v_attempt >= v_attempts then
        raise exception 'could not get the lock for DDL after % attempts of lock_timeout %: %', v_attempts, v_timeout, p_sql
          using errcode = 'lock_not_available',
                hint = 'A long transaction holds a conflicting lock on the table: let it finish (see pg_stat_activity) and retry.';
      end if;
      perform pg_sleep(least(5.0, 0.05 * power(2, v_attempt)) * (0.5 + random() / 2));
    end;
  end loop;
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
create or replace function partition_mgmt.lock_capacity()
returns bigint
language sql stable
set search_path = ''
as $$
  select current_setting('max_locks_per_transaction')::bigint
         * (current_setting('max_connections')::bigint + current_setting('autovacuum_max_workers')::bigint + 1
            + current_setting('max_worker_processes')::bigint + current_setting('max_wal_senders')::bigint
            + current_setting('max_prepared_transactions')::bigint)
$$;
comment on function partition_mgmt.lock_capacity() is
  'Slots in the shared lock table for all sessions together: max_locks_per_transaction x (max_connections + autovacuum_max_workers + 1 + max_worker_processes + max_wal_senders + max_prepared_transactions).';

-- The budget rule in one place: a tree is within its lock budget while a statement without the
-- partition keys locks at most this many slots, so that p_minimum such statements fit in the lock
-- table at once (lock_budget(), start_promotion, the nightly promote step).
create or replace function partition_mgmt.keyless_lock_allowance(p_minimum integer)
returns bigint
language sql stable
set search_path = ''
as $$
  select partition_mgmt.lock_capacity() / greatest(p_minimum, 1)
$$;
comment on function partition_mgmt.keyless_lock_allowance(integer) is
  'The most slots a statement without the partition keys may lock so that p_minimum such statements fit in the lock table at once: lock_capacity() / p_minimum.';

-- Slots of the shared lock table this transaction holds now (fast-path locks excluded).
create or replace function partition_mgmt.held_locks()
returns integer
language sql volatile
set search_path = ''
as $$
  select count(*)::integer from pg_catalog.pg_locks where pid = pg_catalog.pg_backend_pid() and not fastpath
$$;

-- How many slots one transaction of the bundle may fill with partition DDL before it stops and
-- leaves the rest to its next call (or to maintenance): a fifth of the table, so that the app's
-- own statements keep the rest; partition_mgmt.ddl_lock_budget overrides it for the transaction.
create or replace function partition_mgmt.ddl_lock_budget()
returns integer
language sql stable
set search_path = ''
as $$
  select coalesce(nullif(current_setting('partition_mgmt.ddl_lock_budget', true), '')::integer,
                  greatest(100, partition_mgmt.lock_capacity() / 5)::integer)
$$;

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

-- Whether ddl_budget_exhausted() said so earlier in this transaction.
create or replace function partition_mgmt.budget_spent()
returns boolean
language sql stable
set search_path = ''
as $$ select coalesce(current_setting('partition_mgmt.budget_exhausted', true), '') = 'on' $$;

-- Every relation of the tree under p_root (itself included), read from the catalog without a
-- lock: pg_partition_tree() locks every partition (AccessShare), which on a tree larger than the
-- lock table fails with "out of shared memory" exactly where a budget report should warn.
create or replace function partition_mgmt.tree_members(p_root regclass)
returns table (relid regclass, parentrelid regclass, isleaf boolean, level integer)
language sql stable
set search_path = ''
as $$
  with recursive t(relid, parentrelid, level) as (
    select p_root::oid, null::oid, 0
    union all
    select i.inhrelid, i.inhparent, t.level + 1 from t join pg_catalog.pg_inherits i on i.inhparent = t.relid
  )
  select t.relid::regclass, t.parentrelid::regclass, c.relkind not in ('p', 'I'), t.level
  from t join pg_catalog.pg_class c on c.oid = t.relid
$$;

-- Locks a statement that names the table but not its partition keys takes: every relation of
-- the tree (the planner opens and locks every partition) and every index of every leaf. From
-- PostgreSQL 16 on the planner also opens the partitioned tables' own (partitioned) indexes
-- (commit 3c569049b, unique indexes as join-removal proofs), and locks them: 15.18 takes none of
-- them, 17.12 every one (measured by test/partitions/lock-budget.test.ts on both).
create or replace function partition_mgmt.partitioned_indexes_locked()
returns boolean
language sql stable
set search_path = ''
as $$ select pg_catalog.current_setting('server_version_num')::integer >= 160000 $$;

create or replace function partition_mgmt.keyless_statement_locks(p_table regclass)
returns bigint
language sql stable
set search_path = ''
as $$
  select count(*) + coalesce(sum((select count(*) from pg_catalog.pg_index i where i.indrelid = t.relid))
                               filter (where t.isleaf or partition_mgmt.partitioned_indexes_locked()), 0)
  from partition_mgmt.tree_members(p_table) t
$$;

-- The partitioned parent's REPLICA IDENTITY on every leaf under p_under (the whole tree by
-- default): PostgreSQL keeps it per relation and a new partition does not inherit it. Realtime
-- needs FULL to send a change's old record. (USING INDEX is not carried: the default applies.)
create or replace function partition_mgmt.apply_replica_identity(p_table_key text, p_under regclass default null)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_parent regclass := (select m.parent from partition_mgmt.managed_tables m where m.table_key = p_table_key);
  v_ident "char" := (select relreplident from pg_catalog.pg_class where oid = v_parent);
  r record;
  v_count integer := 0;
begin
  if v_parent is null or v_ident not in ('d', 'f', 'n') then
    return 0;
  end if;
  for r in select t.relid from partition_mgmt.tree_members(coalesce(p_under, v_parent)) t
           join pg_catalog.pg_class k on k.oid = t.relid
           where t.isleaf and k.relreplident <> v_ident loop
    execute format('alter table %s replica identity %s', r.relid::regclass, case v_ident when 'f' then 'full' when 'n' then 'nothing' else 'default' end);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Comma-separated, quoted column list of a table (live columns in attribute order).
create or replace function partition_mgmt.column_list(p_table regclass, p_prefix text default null)
returns text
language sql stable
set search_path = ''
as $$
  select string_agg(case when p_prefix is null then format('%I', attname) else format('%I.%I', p_prefix, attname) end, ', ' order by attnum)
  from pg_catalog.pg_attribute
  where attrelid = p_table and attnum > 0 and not attisdropped
$$;

-- A partition is never reachable by the API roles, even by its own name.
create or replace function partition_mgmt.secure_partition(p_schema text, p_name text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute format('alter table %I.%I enable row level security', p_schema, p_name);
  -- deny-all said out loud: RLS without a policy denies as well, but Supabase's advisor lists
  -- every such table (lint 0008). Reads through the parent use the parent's policies only.
  if not exists (select from pg_catalog.pg_policy p where p.polrelid = format('%I.%I', p_schema, p_name)::regclass and p.polname = 'no_direct_access') then
    execute format('create policy no_direct_access on %I.%I for all using (false) with check (false)', p_schema, p_name);
  end if;
  execute format('revoke all on table %I.%I from public, anon, authenticated', p_schema, p_name);
  execute format('grant all on table %I.%I to service_role', p_schema, p_name);
end
$$;

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

-- Takes the rows of the DEFAULT partition p_from matching p_where out into a temporary stash, in
-- this transaction, to be re-inserted once the partition for them is attached. The DEFAULT is
-- locked first (ATTACH needs ACCESS EXCLUSIVE on it anyway), so no concurrent insert can put a row
-- of the new range into it between the move and the ATTACH. The key-table trigger sees the flag
-- and keeps the keys (the rows keep their ids and keys).
create or replace function partition_mgmt.stash_rows(p_from regclass, p_where text)
returns bigint
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_count bigint;
  v_parent regclass;
begin
  if exists (select from pg_catalog.pg_class where relname = 'partition_mgmt_stash' and relnamespace = pg_catalog.pg_my_temp_schema()) then
    execute 'drop table pg_temp.partition_mgmt_stash';
  end if;
  -- Writers of the parent wait at the parent (and are routed afresh once the new partition is
  -- attached) instead of queueing on the DEFAULT, where they would fail its new constraint.
  -- Parent before child, the order every statement takes them in.
  select i.inhparent::regclass into v_parent from pg_catalog.pg_inherits i where i.inhrelid = p_from;
  if v_parent is not null then
    perform partition_mgmt.run_ddl(format('lock table only %s in share row exclusive mode', v_parent));
  end if;
  perform partition_mgmt.run_ddl(format('lock table %s in access exclusive mode', p_from));
  perform set_config('partition_mgmt.moving_rows', 'on', true);
  execute format('create temporary table partition_mgmt_stash on commit drop as
                  with moved as (delete from %s where %s returning *) select * from moved', p_from, p_where);
  get diagnostics v_count = row_count;
  perform set_config('partition_mgmt.moving_rows', 'off', true);
  return v_count;
end
$$;

create or replace function partition_mgmt.unstash_rows(p_to regclass)
returns bigint
language plpgsql
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  v_count bigint;
begin
  if not exists (select from pg_catalog.pg_class where relname = 'partition_mgmt_stash' and relnamespace = pg_catalog.pg_my_temp_schema()) then
    return 0;
  end if;
  perform set_config('partition_mgmt.moving_rows', 'on', true);
  execute format('insert into %s (%s) select %s from pg_temp.partition_mgmt_stash',
    p_to, partition_mgmt.column_list(p_to), partition_mgmt.column_list(p_to));
  get diagnostics v_count = row_count;
  perform set_config('partition_mgmt.moving_rows', 'off', true);
  execute 'drop table pg_temp.partition_mgmt_stash';
  return v_count;
end
$$;

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

-- A DEFAULT leaf of a sized tree holds the rows of every program (the root's) or site (a
-- program's) without partitions of its own: indexes of its own serve the reads that name one of
-- them (a program page or a site, newest first), which the parent's indexes, made for leaves that
-- hold one site, do not.
create or replace function partition_mgmt.add_shared_leaf_indexes(p_table_key text, p_leaf regclass, p_level text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_name text := (select relname from pg_catalog.pg_class where oid = p_leaf);
begin
  if p_level = 'program' then
    execute format('create index if not exists %I on %s (%I, %I desc, %I desc)', left(v_name, 50) || '_program_idx', p_leaf,
      c.program_column, c.time_column, c.id_column);
  end if;
  execute format('create index if not exists %I on %s (%I, %I desc, %I desc)', left(v_name, 53) || '_site_idx', p_leaf,
    c.site_column, c.time_column, c.id_column);
end
$$;

-- -----------------------------------------------------------------------------
-- A row without a partition key: the error names the app's table, not a DEFAULT leaf
-- -----------------------------------------------------------------------------

-- The partitioned table routes a row by its keys before it checks any constraint, so a row that
-- arrives without program_id, site_id or created_at lands in a DEFAULT partition and fails there,
-- naming a table the app has never heard of:
--   null value in column "site_id" of relation "gas_default" violates not-null constraint
-- A trigger on the partitioned parent (cloned onto every leaf, and onto every leaf attached later)
-- fails such a row first, with the same SQLSTATE (23502) and wording, but naming the table the app
-- wrote, the key, and a HINT that says what to send. Its WHEN clause costs a row with all its keys
-- four null tests and no function call. The site is checked before the program: a program can be
-- taken from the site (where the legacy table's program column is nullable, the triggers of
-- install_program_from_site do so before this one fires), not the other way round.
--
-- It fires before set_company_id_from_program (triggers of one kind fire in name order), whose
-- own message for a row with neither program nor site would name the leaf too.
--
-- A CHECK violation keeps PostgreSQL's message, which names the leaf that checked it, with its
-- SQLSTATE (23514) and the constraint's name unchanged: repeating every CHECK in a trigger would
-- cost every write a second evaluation of each constraint to reword one error.
create or replace function partition_mgmt.install_require_keys(p_table_key text, p_parent regclass)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := p_parent;
  v_fn text := format('%s_require_keys', c.table_key);
  v_checks text := '';
  v_col text;
  v_default text;
  v_hint text;
begin
  foreach v_col in array array[c.id_column, c.site_column, c.program_column, c.time_column] loop
    v_default := partition_mgmt.column_default(v_parent, v_col);
    v_hint := case
      when v_col = c.program_column then
        format('format(%L, new.%I)',
          format('Send %s with the row: the program of its site (select %s from %s.sites where %s = %%L).',
                 c.program_column, 'program_id', c.source_schema, c.site_column), c.site_column)
      when v_default is not null then
        format('%L', format('Leave %s out of the row to take its default (%s), or send a value.', v_col, v_default))
      else
        format('%L', format('Send %s with the row.', v_col))
    end;
    v_checks := v_checks || format($c$
      if new.%1$I is null then
        raise exception 'null value in column "%1$s" of relation "%2$s" violates not-null constraint'
          using errcode = 'not_null_violation', schema = %3$L, table = %2$L, column = %1$L,
                detail = %4$L,
                hint = %5$s;
      end if;$c$,
      v_col, c.source_table, c.source_schema,
      case when v_col = c.id_column
        then format('%s is part of the primary key of %I.%I (%s, %s, %s, %s).',
                    v_col, c.source_schema, c.source_table, c.id_column, c.program_column, c.site_column, c.time_column)
        else format('%s is a partition key of %I.%I (partitioned by %s, %s, %s): a row without it belongs to no partition.',
                    v_col, c.source_schema, c.source_table, c.program_column, c.site_column, c.time_column)
      end,
      v_hint);
  end loop;
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql set search_path = ''
    as $body$
    begin%2$s
      return new;
    end
    $body$$f$, v_fn, v_checks);
  execute format('revoke all on function partition_mgmt.%I() from public', v_fn);

  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = v_parent and t.tgname = 'partition_mgmt_require_keys') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_require_keys before insert or update of %1$I, %2$I, %3$I, %4$I on %5$s for each row
       when (new.%1$I is null or new.%2$I is null or new.%3$I is null or new.%4$I is null)
       execute function partition_mgmt.%6$I()',
      c.id_column, c.program_column, c.site_column, c.time_column, v_parent, v_fn));
  end if;
end
$install$;
revoke all on function partition_mgmt.install_require_keys(text, regclass) from public;
comment on function partition_mgmt.install_require_keys(text, regclass) is
  'Puts the partition_mgmt_require_keys trigger on a managed table''s partitioned parent (create_partitioned_table does): a row without a partition key fails with 23502 naming the table the app wrote (not the DEFAULT leaf it was routed to), the key and what to send. Idempotent.';

-- -----------------------------------------------------------------------------
-- Rows written without a program: the program is taken from the site
-- -----------------------------------------------------------------------------

-- Where the legacy table's program column is nullable (gasifier_observations: older app versions
-- send only the site), the app goes on writing such rows after the swap, and every one of them
-- must land. The partitioned table cannot store the NULL (program_id is in its primary key), and
-- it routes a row by its keys before any trigger runs: a row without a program reaches the root's
-- DEFAULT leaf, where a BEFORE trigger may change the row but not send it to another partition.
-- So the triggers install_program_from_site puts on the parent do this:
--
--  * A row inserted without a program takes its site's program: the program its company_id was
--    always derived from, and what the migration copies for the legacy rows without one. Where
--    that program shares the root's DEFAULT leaf (in a sized tree, every program below
--    target_rows_per_leaf), the row is stored right there and RETURNING gives it back. Where the
--    program has partitions of its own, the root's DEFAULT cannot hold it: the trigger inserts the
--    row again with its program (routed to its leaf, as the caller, under RLS, every trigger
--    firing there once) and skips the original. The row is stored and readable at once, but the
--    statement neither counts nor returns it (RETURNING, the INSERT and COPY row counts), and an
--    ON CONFLICT clause does not apply to it. PostgreSQL offers no way around this: a partition
--    that holds the program's rows cannot be reached by a row whose program is NULL.
--  * An update that sets program_id to NULL takes the site's program (the row moves when it has
--    to); an update of site_id gives a row written without a program the new site's program.
--  * partition_mgmt.rows_without_program lists these rows (the migration lists the legacy rows
--    without a program as it copies them): their program follows their site, as the legacy
--    table's company did, and the reverse sync writes NULL for them into <table>_old, so a
--    rollback gives back what the app wrote. An update that sends a program takes the row off.
--
-- The triggers are named to fire before partition_mgmt_require_keys (triggers of one kind fire in
-- name order), the set for program_id before the one for site_id. (A BEFORE trigger of the app's
-- that fires after them and skips the row leaves its id listed without a row: harmless unless the
-- app inserts that id again, with a program, which then counts as written without one.)

-- The program of the site of a row written without one, for the triggers (which run as the caller,
-- so that a row they insert again passes the caller's RLS): SECURITY DEFINER to read the site
-- whatever the caller may see, but the program only of a site of the caller's companies (as the
-- tables' RLS; any site for a role that bypasses RLS). A site of another company fails as RLS
-- would have failed the row in the legacy table (42501, naming the table), an unknown site as the
-- legacy table's company trigger did (23503). p_event: 'written' (a row without a program: its
-- site's program, and the row goes on the list), 'site' (the site of a listed row changed: the new
-- site's program; nothing for a row whose program the app sent), 'sent' (the app sent a program:
-- off the list).
create or replace function partition_mgmt.derive_program(p_table_key text, p_observation_id uuid, p_site_id uuid, p_event text,
  out program_id uuid, out own_partition boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_bypass boolean := coalesce((select r.rolbypassrls from pg_catalog.pg_roles r
                                where r.rolname = coalesce(nullif(pg_catalog.current_setting('role', true), 'none'), session_user)), false);
  v_company uuid;
begin
  if p_event is null or p_event not in ('written', 'site', 'sent') then
    raise exception 'derive_program: unknown event %', coalesce(p_event, 'NULL')
      using hint = 'Use written (a row without a program), site (its site changed) or sent (the app sent a program).';
  end if;
  if p_event = 'sent' then
    delete from partition_mgmt.rows_without_program w
    where w.table_key = p_table_key and w.observation_id = p_observation_id
      and (v_bypass or exists (select from partition_mgmt.observation_keys k join public.pilot_programs p on p.program_id = k.program_id
                               where k.table_key = p_table_key and k.observation_id = p_observation_id
                                 and p.company_id = any ((select private.user_company_ids())::uuid[])));
    return;
  end if;
  if p_event = 'site' and not exists (select from partition_mgmt.rows_without_program w
                                      where w.table_key = p_table_key and w.observation_id = p_observation_id) then
    return;
  end if;
  select s.program_id, p.company_id into program_id, v_company
  from public.sites s join public.pilot_programs p on p.program_id = s.program_id
  where s.site_id = p_site_id;
  if not found then
    raise exception '%.%: site_id % does not exist (program_id is NULL: the program is taken from the site)',
      c.source_schema, c.source_table, p_site_id
      using errcode = 'foreign_key_violation',
            hint = 'Send the site_id of an existing site (public.sites), or send program_id.';
  end if;
  if not v_bypass and not coalesce(v_company = any ((select private.user_company_ids())::uuid[]), false) then
    raise exception 'new row violates row-level security policy for table "%"', c.source_table
      using errcode = 'insufficient_privilege';
  end if;
  own_partition := exists (select from partition_mgmt.partition_registry r
                           where r.table_key = p_table_key and r.level = 'program' and not r.is_default
                             and r.program_id = derive_program.program_id);
  if p_event = 'written' then
    insert into partition_mgmt.rows_without_program (table_key, observation_id) values (p_table_key, p_observation_id)
    on conflict do nothing;
  end if;
end
$$;
revoke all on function partition_mgmt.derive_program(text, uuid, uuid, text) from public;
grant execute on function partition_mgmt.derive_program(text, uuid, uuid, text) to authenticated, service_role;

-- The trigger function (generated per table with its column names; SECURITY INVOKER, see above)
-- and its three triggers on the partitioned parent, cloned onto every leaf. Idempotent.
create or replace function partition_mgmt.install_program_from_site(p_table_key text, p_parent regclass)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_fn text := format('%s_program_from_site', c.table_key);
begin
  execute format($f$
    create or replace function partition_mgmt.%1$I() returns trigger
    language plpgsql set search_path = ''
    as $body$
    declare
      v_id uuid := new.%3$I;
      v record;
    begin
      if tg_op = 'UPDATE' then
        v_id := old.%3$I;   -- the list follows an id change in zz_move_observation_keys, which fires later
      end if;
      if tg_argv[0] = 'set' and new.%4$I is not null then
        perform partition_mgmt.derive_program(%2$L, v_id, new.%5$I, 'sent');
        return new;
      end if;
      if new.%5$I is null then
        return new;   -- partition_mgmt_require_keys reports the missing site
      end if;
      select * into v from partition_mgmt.derive_program(%2$L, v_id, new.%5$I, case when tg_argv[0] = 'site' then 'site' else 'written' end);
      if v.program_id is null then
        return new;   -- the site changed under a program the app sent: it stays
      end if;
      new.%4$I := v.program_id;
      if tg_op = 'INSERT' and v.own_partition then
        -- routed by its NULL program to the root's DEFAULT leaf, which cannot hold this program
        execute format('insert into %%1$s select * from pg_catalog.jsonb_populate_record(null::%%1$s, $1)',
                       pg_catalog.pg_partition_root(tg_relid)::regclass)
          using pg_catalog.to_jsonb(new);
        return null;
      end if;
      return new;
    end
    $body$$f$, v_fn, c.table_key, c.id_column, c.program_column, c.site_column);
  execute format('revoke all on function partition_mgmt.%I() from public', v_fn);

  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_parent and t.tgname = 'partition_mgmt_program_from_site') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_program_from_site before insert on %1$s for each row when (new.%2$I is null)
       execute function partition_mgmt.%3$I(%4$L)', p_parent, c.program_column, v_fn, 'insert'));
  end if;
  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_parent and t.tgname = 'partition_mgmt_program_set') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_program_set before update of %2$I on %1$s for each row
       execute function partition_mgmt.%3$I(%4$L)', p_parent, c.program_column, v_fn, 'set'));
  end if;
  if not exists (select from pg_catalog.pg_trigger t where t.tgrelid = p_parent and t.tgname = 'partition_mgmt_program_site_moved') then
    perform partition_mgmt.run_ddl(format(
      'create trigger partition_mgmt_program_site_moved before update of %2$I on %1$s for each row
       when (old.%2$I is distinct from new.%2$I)
       execute function partition_mgmt.%3$I(%4$L)', p_parent, c.site_column, v_fn, 'site'));
  end if;
end
$install$;
revoke all on function partition_mgmt.install_program_from_site(text, regclass) from public;
comment on function partition_mgmt.install_program_from_site(text, regclass) is
  'Puts the triggers that give a row written without program_id its site''s program on a managed table''s partitioned parent (create_partitioned_table does, where the legacy table''s program column is nullable). Idempotent.';

-- A column's default expression as text (NULL without one): the hints of install_require_keys,
-- random_uuid_default and the pre-check's 'new ids' row read it.
create or replace function partition_mgmt.column_default(p_table regclass, p_column text)
returns text
language sql
stable
set search_path = ''
as $$
  select pg_catalog.pg_get_expr(d.adbin, d.adrelid)
  from pg_catalog.pg_attrdef d
  join pg_catalog.pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
  where d.adrelid = p_table and a.attname = p_column
$$;
revoke all on function partition_mgmt.column_default(regclass, text) from public;

-- Whether a column's default is a random UUID (gen_random_uuid(), uuid-ossp's uuid_generate_v4()).
create or replace function partition_mgmt.random_uuid_default(p_table regclass, p_column text)
returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce(partition_mgmt.column_default(p_table, p_column) operator(pg_catalog.~) '^([a-z_]+\.)?(gen_random_uuid|uuid_generate_v4)\(\)$', false)
$$;
revoke all on function partition_mgmt.random_uuid_default(regclass, text) from public;

-- Time-ordered ids: the default expression of a UUID of version 7 (RFC 9562), the Unix time in
-- milliseconds in its first 48 bits, then the version, 74 random bits and the variant; the random
-- part is gen_random_uuid()'s (a version 4 UUID), whose version bits 0100 become 0111. The
-- partitioned tables' id default where the legacy table's is a random UUID
-- (managed_tables.time_ordered_ids): a random id lands on a random page of every index that leads
-- with it (the leaf's primary key and observation_keys), so after each checkpoint nearly every
-- insert writes a full image of two index pages to the WAL; ids in time order go to the right
-- edge. An expression of built-in functions rather than a function of ours: nothing to call per
-- insert (a SQL function with its own search_path is planned again by every statement: 38 us
-- more per statement than gen_random_uuid(), measured with pgbench; this expression 0.1-0.2 us
-- more per call, 100,000 calls in one query), and the column does not depend on this schema.
create or replace function partition_mgmt.time_ordered_uuid_default()
returns text
language sql
immutable
set search_path = ''
as $$
  select 'encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) from 1 for 6), 52, 1), 53, 1), ''hex'')::uuid'
$$;
revoke all on function partition_mgmt.time_ordered_uuid_default() from public;
comment on function partition_mgmt.time_ordered_uuid_default() is
  'The default expression of time-ordered ids (UUID version 7: creation time in milliseconds, then 74 random bits), built-in functions only. The partitioned table''s id default where the legacy default is a random UUID (managed_tables.time_ordered_ids).';

-- Creates the partitioned parent of a managed table from the live legacy table: same columns,
-- types, defaults, CHECK constraints and comments (so a column the app added later comes along),
-- new ids in time order where the legacy ids are random UUIDs (time_ordered_uuid_default()),
-- keys NOT NULL, the indexes every leaf needs, the legacy table's RLS policies (grants come with
-- the swap), the
-- key-table trigger, a root DEFAULT partition, and a partition per existing program and site.
create or replace function partition_mgmt.create_partitioned_table(p_table_key text, p_precreate boolean default true)
returns regclass
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_source regclass;
  v_parent regclass;
  v_default text := format('%s_default', c.name_prefix);
  v_pol record;
  v_trg record;
  v_prog uuid;
begin
  perform pg_advisory_xact_lock(hashtextextended('partition_mgmt:create:' || c.table_key, 0));
  if c.parent is not null and to_regclass(c.parent::text) is not null then
    return c.parent;
  end if;

  v_source := to_regclass(format('%I.%I', c.source_schema, c.source_table));
  if v_source is null then
    raise exception 'source table %.% of managed table "%" does not exist', c.source_schema, c.source_table, c.table_key
      using hint = 'Fix source_schema/source_table in partition_mgmt.managed_tables.';
  end if;
  if to_regclass(format('%I.%I', c.source_schema, c.partitioned_table)) is not null then
    raise exception 'table %.% already exists but is not registered as the parent of "%"', c.source_schema, c.partitioned_table, c.table_key
      using hint = 'Drop it or set partition_mgmt.managed_tables.parent to it.';
  end if;

  execute format(
    'create table %I.%I (like %s including defaults including constraints including generated including storage including comments) partition by list (%I)',
    c.source_schema, c.partitioned_table, v_source, c.program_column);
  v_parent := format('%I.%I', c.source_schema, c.partitioned_table)::regclass;
  execute format('alter table %s alter column %I set not null, alter column %I set not null, alter column %I set not null, alter column %I set not null',
    v_parent, c.id_column, c.program_column, c.site_column, c.time_column);
  if c.time_ordered_ids and partition_mgmt.random_uuid_default(v_parent, c.id_column) then
    execute format('alter table %s alter column %I set default %s', v_parent, c.id_column, partition_mgmt.time_ordered_uuid_default());
  end if;
  execute format('comment on table %s is %L', v_parent,
    format('%s partitioned Program (LIST) -> Site (LIST) -> Period (RANGE) by partition_mgmt; partitions live in schema partitions.', c.source_table));

  -- Indexes created on the parent reach every partition, including those attached later.
  -- The primary key must contain all partition keys; observation_id leads so a leaf finds an id fast.
  execute format('alter table %s add constraint %I primary key (%I, %I, %I, %I)',
    v_parent, c.partitioned_table || '_pkey', c.id_column, c.program_column, c.site_column, c.time_column);
  -- Time order inside each leaf (its program and site are fixed by the partition bounds), so a
  -- newest-first page of a program or a site is a Merge Append of index scans that stops after one
  -- page, with or without a site filter; also the keyset cursor's order.
  execute format('create index %I on %s (%I desc, %I desc)', c.partitioned_table || '_time_idx', v_parent,
    c.time_column, c.id_column);
  if exists (select from pg_catalog.pg_attribute where attrelid = v_parent and attname = 'submission_id' and not attisdropped) then
    execute format('create index %I on %s (submission_id)', c.partitioned_table || '_submission_idx', v_parent);
  end if;

  -- Security as on the legacy table: RLS on, the same policies, the same grants.
  execute format('alter table %s enable row level security', v_parent);
  for v_pol in
    select policyname, permissive, cmd, roles, qual, with_check
    from pg_catalog.pg_policies where schemaname = c.source_schema and tablename = c.source_table
  loop
    execute format('create policy %I on %s as %s for %s to %s%s%s', v_pol.policyname, v_parent, v_pol.permissive, v_pol.cmd,
      (select string_agg(case when r = 'public' then 'public' else format('%I', r) end, ', ') from unnest(v_pol.roles) r),
      case when v_pol.qual is not null then format(' using (%s)', v_pol.qual) else '' end,
      case when v_pol.with_check is not null then format(' with check (%s)', v_pol.with_check) else '' end);
  end loop;
  -- No grants yet: until the swap the copy is written by the sync and the backfill only, and an
  -- API role writing into it directly would make it differ from the legacy table. The swap gives
  -- it the legacy table's grants.
  execute format('revoke all on table %s from public, anon, authenticated, service_role', v_parent);

  -- The legacy table's triggers that keep company_id filled and record which daily metrics an
  -- update changed come along (same functions; the metrics' statement triggers record only while
  -- the table is the live one, see analytics.mark_metrics_changed). Inserts and deletes are
  -- recorded by the key table's row trigger instead (install_key_trigger).
  for v_trg in
    select t.tgname, pg_catalog.pg_get_triggerdef(t.oid) as def
    from pg_catalog.pg_trigger t
    where t.tgrelid = v_source and not t.tgisinternal
      and (t.tgfoid = to_regprocedure('private.set_company_id_from_program()')
           or (t.tgfoid = to_regprocedure('analytics.mark_metrics_changed()') and t.tgname not in ('metrics_changed_insert', 'metrics_changed_delete')))
  loop
    execute replace(v_trg.def, format(' ON %s ', v_source), format(' ON %s ', v_parent));
  end loop;

  perform partition_mgmt.attach_key_triggers(c.table_key, v_parent);
  perform partition_mgmt.install_require_keys(c.table_key, v_parent);
  -- where the app may leave the program out (nullable in the legacy table), it comes from the site
  if exists (select from pg_catalog.pg_attribute a where a.attrelid = v_source and a.attname = c.program_column
             and not a.attisdropped and not a.attnotnull) then
    perform partition_mgmt.install_program_from_site(c.table_key, v_parent);
  end if;

  -- The root DEFAULT partition: rows for a program that has no partition yet are never rejected.
  -- In a sized tree it is where every program lives until its rows fill a leaf.
  execute format('create table partitions.%I partition of %s default', v_default, v_parent);
  perform partition_mgmt.secure_partition('partitions', v_default);
  if c.tree_shape = 'sized' then
    perform partition_mgmt.add_shared_leaf_indexes(c.table_key, format('partitions.%I', v_default)::regclass, 'program');
  end if;
  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf)
  values ('partitions', v_default, c.table_key, 'program', true, true);

  update partition_mgmt.managed_tables set parent = v_parent where table_key = c.table_key;

  if p_precreate and c.tree_shape = 'literal' then
    for v_prog in select program_id from public.pilot_programs order by start_date, program_id loop
      perform partition_mgmt.precreate_program_partitions(v_prog, c.table_key);
    end loop;
  end if;
  return v_parent;
end
$$;

-- -----------------------------------------------------------------------------
-- Automatic creation: program, site and period partitions
-- -----------------------------------------------------------------------------

create or replace function partition_mgmt.parent_of(p_table_key text)
returns regclass
language plpgsql stable
set search_path = ''
as $$
declare
  v regclass;
begin
  select parent into v from partition_mgmt.managed_tables where table_key = p_table_key;
  if v is null then
    raise exception 'managed table "%" has no partitioned parent yet', p_table_key
      using hint = format('Run select partition_mgmt.create_partitioned_table(%L);', p_table_key);
  end if;
  return v;
end
$$;

-- The parent, locked ACCESS SHARE until commit. DDL names the parent by its name, and a swap
-- renames it: a name read in the instant a concurrent rename commits is stale, so the LOCK fails
-- (undefined_table) and is retried with the fresh name; once locked, the rename waits for us.
create or replace function partition_mgmt.lock_parent(p_table_key text)
returns regclass
language plpgsql
set search_path = ''
as $$
declare
  v regclass := partition_mgmt.parent_of(p_table_key);
  v_attempt integer := 0;
begin
  loop
    begin
      execute format('lock table only %s in access share mode', v);
      return v;
    exception when undefined_table then
      v_attempt := v_attempt + 1;
      if v_attempt >= 3 then
        raise;
      end if;
    end;
  end loop;
end
$$;

-- Program partition (LIST by site, with its own DEFAULT). Returns its qualified name.
create or replace function partition_mgmt.ensure_program_partition(p_table_key text, p_program_id uuid)
returns text
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_parent regclass := partition_mgmt.parent_of(p_table_key);
  v_name text;
  v_default_part text;
  v_root_default regclass;
begin
  if p_program_id is null then
    raise exception 'program_id must not be null' using hint = 'Pass the program_id of an existing pilot program.';
  end if;
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'program' and not is_default and program_id = p_program_id;
  if v_name is not null then
    return v_name;
  end if;
  perform partition_mgmt.lock_key(p_table_key, 'program', p_program_id);
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'program' and not is_default and program_id = p_program_id;
  if v_name is not null then
    return v_name;
  end if;

  v_parent := partition_mgmt.lock_parent(p_table_key);
  v_name := format('%s_p_%s', c.name_prefix, partition_mgmt.alias_for(p_program_id));
  v_default_part := v_name || '_default';
  -- Built standalone (no lock on the hot parent), then attached. The CHECK implies the partition
  -- bound so ATTACH does not scan.
  execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage) partition by list (%I)',
    v_name, v_parent, c.site_column);
  execute format('alter table partitions.%I add constraint %I check (%I = %L)', v_name, v_name || '_bound', c.program_column, p_program_id);
  execute format('create table partitions.%I partition of partitions.%I default', v_default_part, v_name);
  perform partition_mgmt.secure_partition('partitions', v_name);
  perform partition_mgmt.secure_partition('partitions', v_default_part);
  if c.tree_shape = 'sized' then
    perform partition_mgmt.add_shared_leaf_indexes(c.table_key, format('partitions.%I', v_default_part)::regclass, 'site');
  end if;

  -- Rows of this program that landed in the root default move here in the same step, so the
  -- ATTACH never fails with "updated partition constraint for default partition would be violated".
  select format('%I.%I', partition_schema, partition_name)::regclass into v_root_default
  from partition_mgmt.partition_registry where table_key = p_table_key and level = 'program' and is_default;
  perform partition_mgmt.stash_rows(v_root_default, format('%I = %L', c.program_column, p_program_id));
  perform partition_mgmt.run_ddl(format('alter table %s attach partition partitions.%I for values in (%L)', v_parent, v_name, p_program_id));
  perform partition_mgmt.unstash_rows(format('partitions.%I', v_name)::regclass);
  perform partition_mgmt.apply_replica_identity(p_table_key, format('partitions.%I', v_name)::regclass);

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id)
  values ('partitions', v_name, p_table_key, 'program', false, false, p_program_id),
         ('partitions', v_default_part, p_table_key, 'site', true, true, p_program_id);
  return format('partitions.%I', v_name);
end
$$;

-- Site partition: RANGE by time with its own DEFAULT, or a single leaf when the site's
-- granularity is 'none'. p_granularity: the split of its periods (default: the site's pinned
-- granularity, else the table's default_granularity). Returns its qualified name.
create or replace function partition_mgmt.ensure_site_partition(p_table_key text, p_program_id uuid, p_site_id uuid, p_granularity text default null)
returns text
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_program_part text;
  v_name text;
  v_default_part text;
  v_gran text;
begin
  if p_site_id is null then
    raise exception 'site_id must not be null (program %)', p_program_id using hint = 'Pass the site_id of an existing site.';
  end if;
  if p_granularity is not null and p_granularity not in ('week', 'month', 'quarter', 'year', 'none') then
    raise exception 'invalid granularity "%" for site %', p_granularity, p_site_id using hint = 'Use week, month, quarter, year or none.';
  end if;
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'site' and not is_default and program_id = p_program_id and site_id = p_site_id;
  if v_name is not null then
    return v_name;
  end if;
  v_program_part := partition_mgmt.ensure_program_partition(p_table_key, p_program_id);
  perform partition_mgmt.lock_key(p_table_key, 'site', p_program_id, p_site_id);
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'site' and not is_default and program_id = p_program_id and site_id = p_site_id;
  if v_name is not null then
    return v_name;
  end if;

  v_gran := coalesce(p_granularity, partition_mgmt.site_granularity_for(p_table_key, p_site_id));
  v_name := format('%s_p_%s_s_%s', c.name_prefix, partition_mgmt.alias_for(p_program_id), partition_mgmt.alias_for(p_site_id));
  if v_gran = 'none' then
    execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage)',
      v_name, v_program_part);
  else
    execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage) partition by range (%I)',
      v_name, v_program_part, c.time_column);
  end if;
  execute format('alter table partitions.%I add constraint %I check (%I = %L)', v_name, v_name || '_bound', c.site_column, p_site_id);
  perform partition_mgmt.secure_partition('partitions', v_name);
  if v_gran <> 'none' then
    v_default_part := v_name || '_default';
    execute format('create table partitions.%I partition of partitions.%I default', v_default_part, v_name);
    perform partition_mgmt.secure_partition('partitions', v_default_part);
  end if;

  perform partition_mgmt.stash_rows(
    (select format('%I.%I', partition_schema, partition_name)::regclass from partition_mgmt.partition_registry
     where table_key = p_table_key and level = 'site' and is_default and program_id = p_program_id),
    format('%I = %L', c.site_column, p_site_id));
  perform partition_mgmt.run_ddl(format('alter table %s attach partition partitions.%I for values in (%L)', v_program_part, v_name, p_site_id));
  perform partition_mgmt.unstash_rows(format('partitions.%I', v_name)::regclass);
  perform partition_mgmt.apply_replica_identity(p_table_key, format('partitions.%I', v_name)::regclass);

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id, granularity)
  values ('partitions', v_name, p_table_key, 'site', false, v_gran = 'none', p_program_id, p_site_id, v_gran);
  if v_default_part is not null then
    insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id)
    values ('partitions', v_default_part, p_table_key, 'period', true, true, p_program_id, p_site_id);
  end if;
  return format('partitions.%I', v_name);
end
$$;

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

-- Leaf for the period containing p_ts at the site's period granularity (clipped so it never
-- overlaps a leaf made under an earlier granularity). Returns its qualified name.
create or replace function partition_mgmt.ensure_period_partition(p_table_key text, p_program_id uuid, p_site_id uuid, p_ts timestamptz)
returns text
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_site_part text;
  v_site_gran text;
  v_gran text;
  v_name text;
  v_lo timestamptz;
  v_hi timestamptz;
begin
  if p_ts is null then
    raise exception '% must not be null (program %, site %)', c.time_column, p_program_id, p_site_id;
  end if;
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'period' and not is_default and program_id = p_program_id and site_id = p_site_id
    and range_start <= p_ts and range_end > p_ts;
  if v_name is not null then
    return v_name;
  end if;
  v_site_part := partition_mgmt.ensure_site_partition(p_table_key, p_program_id, p_site_id);
  select granularity into v_site_gran from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'site' and not is_default and program_id = p_program_id and site_id = p_site_id;
  if v_site_gran = 'none' then
    return v_site_part;   -- the site partition is the leaf
  end if;

  v_gran := partition_mgmt.period_granularity(p_table_key, p_program_id, p_site_id);
  select * into v_lo, v_hi from partition_mgmt.period_bounds(v_gran, p_ts);
  perform partition_mgmt.lock_key(p_table_key, 'site', p_program_id, p_site_id);
  select format('%I.%I', partition_schema, partition_name) into v_name from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'period' and not is_default and program_id = p_program_id and site_id = p_site_id
    and range_start <= p_ts and range_end > p_ts;
  if v_name is not null then
    return v_name;
  end if;
  -- never overlap a neighbour made under another granularity
  select greatest(v_lo, coalesce(max(range_end) filter (where range_end <= p_ts), v_lo)),
         least(v_hi, coalesce(min(range_start) filter (where range_start > p_ts), v_hi))
    into v_lo, v_hi
  from partition_mgmt.partition_registry
  where table_key = p_table_key and level = 'period' and not is_default and program_id = p_program_id and site_id = p_site_id;

  v_name := format('%s_%s', trim(both '"' from split_part(v_site_part, '.', 2)), partition_mgmt.period_suffix(v_gran, v_lo));
  if exists (select from partition_mgmt.partition_registry where partition_schema = 'partitions' and partition_name = v_name) then
    v_name := v_name || to_char(v_lo at time zone 'UTC', '_MM_DD');
  end if;

  execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage)', v_name, v_site_part);
  execute format('alter table partitions.%I add constraint %I check (%I >= %L and %I < %L)',
    v_name, v_name || '_bound', c.time_column, v_lo, c.time_column, v_hi);
  perform partition_mgmt.secure_partition('partitions', v_name);
  perform partition_mgmt.stash_rows(format('%s_default', v_site_part)::regclass,
    format('%I >= %L and %I < %L', c.time_column, v_lo, c.time_column, v_hi));
  perform partition_mgmt.run_ddl(format('alter table %s attach partition partitions.%I for values from (%L) to (%L)', v_site_part, v_name, v_lo, v_hi));
  perform partition_mgmt.unstash_rows(format('partitions.%I', v_name)::regclass);
  perform partition_mgmt.apply_replica_identity(p_table_key, format('partitions.%I', v_name)::regclass);

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id, granularity, range_start, range_end)
  values ('partitions', v_name, p_table_key, 'period', false, true, p_program_id, p_site_id, v_gran, v_lo, v_hi);
  return format('partitions.%I', v_name);
end
$$;

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

-- The plan's entry point. Literal tree: the program's partition, one per site, and the periods
-- from the program's start_date to its end_date, but for a running program only up to the premake
-- horizon (today + premake_months; maintenance moves the horizon forward every night). Sized tree:
-- only what the data asked for, brought up to the horizon: the periods of the program's sites that
-- have partitions of their own (a promoted or pinned site); a program whose rows still share the
-- root's DEFAULT leaf gets nothing. Idempotent, and within this transaction's DDL lock budget:
-- when the budget runs out it stops (setting partition_mgmt.budget_exhausted) and the next call, or
-- maintenance, goes on. Returns the number of partitions created.
create or replace function partition_mgmt.precreate_program_partitions(p_program_id uuid, p_table_key text default null, p_site_id uuid default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_prog record;
  v_site record;
  v_table partition_mgmt.managed_tables;
  v_before int;
  v_horizon timestamptz;
  v_start timestamptz;
begin
  select program_id, start_date, end_date into v_prog from public.pilot_programs where program_id = p_program_id;
  if not found then
    raise exception 'pilot program % does not exist', p_program_id using hint = 'Pass a program_id from public.pilot_programs.';
  end if;
  select count(*) into v_before from partition_mgmt.partition_registry;
  v_start := v_prog.start_date::timestamp at time zone 'UTC';
  <<tables>>
  for v_table in
    select * from partition_mgmt.managed_tables
    where parent is not null and (p_table_key is null or table_key = p_table_key)
    order by table_key
  loop
    v_horizon := partition_mgmt.premake_horizon(v_table.premake_months, v_prog.end_date);
    if v_table.tree_shape = 'literal' then
      perform partition_mgmt.ensure_program_partition(v_table.table_key, v_prog.program_id);
      for v_site in select site_id from public.sites where program_id = v_prog.program_id and (p_site_id is null or site_id = p_site_id) order by site_id loop
        exit tables when partition_mgmt.ddl_budget_exhausted();
        exit tables when not partition_mgmt.premake_site(v_table.table_key, v_prog.program_id, v_site.site_id, v_start, v_horizon);
      end loop;
    else
      -- the sites that have time partitions of their own; giving a program or a site partitions
      -- of its own (its rows fill a leaf, or it is pinned) moves rows, which maintenance does
      -- online (partition_mgmt.promote_step)
      for v_site in
        select r.site_id from partition_mgmt.partition_registry r
        where r.table_key = v_table.table_key and r.level = 'site' and not r.is_default and not r.is_leaf
          and r.program_id = v_prog.program_id and (p_site_id is null or r.site_id = p_site_id)
        order by r.site_id
      loop
        exit tables when partition_mgmt.ddl_budget_exhausted();
        exit tables when not partition_mgmt.premake_site(v_table.table_key, v_prog.program_id, v_site.site_id,
          greatest(v_start, date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'), v_horizon);
      end loop;
    end if;
  end loop;
  return (select count(*) from partition_mgmt.partition_registry) - v_before;
end
$$;
revoke all on function partition_mgmt.precreate_program_partitions(uuid, text, uuid) from public;
grant execute on function partition_mgmt.precreate_program_partitions(uuid, text, uuid) to service_role;

-- Programs and sites whose partitions the insert trigger could not create (lock busy, or this
-- transaction's DDL lock budget spent, e.g. 200 sites inserted at once into a literal tree).
-- Their rows wait in a DEFAULT partition meanwhile; maintenance creates the partitions and clears
-- the row, health() reports what is still pending.
create table if not exists partition_mgmt.creation_deferred (
  id          bigint generated always as identity primary key,
  table_key   text not null references partition_mgmt.managed_tables (table_key) on delete cascade,
  program_id  uuid not null,
  site_id     uuid,
  reason      text not null,
  at          timestamptz not null default now()
);
create unique index if not exists creation_deferred_key_idx
  on partition_mgmt.creation_deferred (table_key, program_id, coalesce(site_id, '00000000-0000-0000-0000-000000000000'::uuid));
comment on table partition_mgmt.creation_deferred is
  'Programs and sites whose partitions were not created with their insert (lock busy or lock budget spent): maintenance creates them, health() reports them meanwhile.';

-- Partitions come with the program or site row, in the same transaction, in a literal tree (a
-- sized tree creates none: a new program or site shares a DEFAULT leaf until its rows fill one).
-- Never fatal to the app's insert and never more than the transaction's DDL lock budget: what is
-- not done now is recorded for maintenance.
create or replace function partition_mgmt.on_program_or_site_insert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_program uuid := (to_jsonb(new) ->> 'program_id')::uuid;
  v_site uuid := case when tg_table_name = 'sites' then (to_jsonb(new) ->> 'site_id')::uuid end;
  v_table partition_mgmt.managed_tables;
  v_reason text;
begin
  for v_table in select * from partition_mgmt.managed_tables where parent is not null order by table_key loop
    continue when v_table.tree_shape = 'sized';
    v_reason := null;
    if partition_mgmt.budget_spent() then
      v_reason := 'the transaction''s DDL lock budget was spent by earlier inserts';
    else
      begin
        perform partition_mgmt.precreate_program_partitions(v_program, v_table.table_key, v_site);
        if partition_mgmt.budget_spent() then
          v_reason := 'the transaction''s DDL lock budget ran out';
        end if;
      exception when others then
        v_reason := format('%s (SQLSTATE %s)', sqlerrm, sqlstate);
      end;
    end if;
    if v_reason is not null then
      raise warning 'partitions of % for program % site % not created now: % (maintenance will create them)',
        v_table.table_key, v_program, coalesce(v_site::text, '-'), v_reason;
      insert into partition_mgmt.creation_deferred (table_key, program_id, site_id, reason)
      values (v_table.table_key, v_program, v_site, v_reason)
      on conflict (table_key, program_id, coalesce(site_id, '00000000-0000-0000-0000-000000000000'::uuid))
      do update set reason = excluded.reason, at = now();
    end if;
  end loop;
  return new;
end
$$;
revoke all on function partition_mgmt.on_program_or_site_insert() from public;


grant execute on function partition_mgmt.resolve_table_key(text), partition_mgmt.config(text) to authenticated, service_role;

-- Whether a DEFAULT partition at p_level holds rows that wait for a partition of their own
-- (maintenance moves them out): every DEFAULT of a literal tree; of a sized tree only a site's
-- DEFAULT (rows outside its periods), since the root's and a program's DEFAULT are the shared
-- leaves of programs and sites too small for partitions of their own.
create or replace function partition_mgmt.is_waiting_room(p_tree_shape text, p_level text)
returns boolean
language sql immutable
set search_path = ''
as $$ select p_tree_shape = 'literal' or p_level = 'period' $$;

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

-- The legacy table's plain indexes and whether prepare_migration carries them to the partitioned
-- table (every leaf gets each one, and every statement without the keys locks each one): not
-- when the parent has one on the same columns already, nor when every column is constant within
-- a leaf (the program, the site, the company: one per program).
create or replace function partition_mgmt.legacy_indexes(p_table_key text, p_legacy regclass)
returns table (index_name text, definition text, carried boolean, reason text)
language sql stable
set search_path = ''
as $$
  select c2.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid),
         x.reason is null,
         x.reason
  from pg_catalog.pg_index i
  join pg_catalog.pg_class c2 on c2.oid = i.indexrelid
  join partition_mgmt.managed_tables m on m.table_key = p_table_key
  cross join lateral (select case
      when m.parent is not null and exists (select from pg_catalog.pg_index x where x.indrelid = m.parent
             and substring(pg_catalog.pg_get_indexdef(x.indexrelid) from ' USING .*$') = substring(pg_catalog.pg_get_indexdef(i.indexrelid) from ' USING .*$'))
        then 'the partitioned table has the same index'
      when 0 <> all (i.indkey::int2[]) and not exists (
             select from unnest(i.indkey::int2[]) k join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k
             where a.attname not in (m.program_column, m.site_column, 'company_id'))
        then 'its columns are constant within a leaf'
      -- the metrics index (program, site, time): the partitions and the parent's time index serve it
      when array_length(i.indkey::int2[], 1) > 1 and 0 <> all (i.indkey::int2[])
           and (select a.attname = m.time_column from pg_catalog.pg_attribute a
                where a.attrelid = i.indrelid and a.attnum = (i.indkey::int2[])[array_length(i.indkey::int2[], 1) - 1])
           and not exists (select from unnest((i.indkey::int2[])[0:array_length(i.indkey::int2[], 1) - 2]) k
                           join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k
                           where a.attname not in (m.program_column, m.site_column, 'company_id'))
        then 'its columns but the time are constant within a leaf, whose time index serves it'
    end as reason) x
  where i.indrelid = p_legacy and not i.indisunique and i.indpred is null
  order by 1
$$;

-- Indexes every leaf of the table has (or will have once prepared): the parent's own (primary
-- key, time order, submission) and the legacy indexes prepare carries.
create or replace function partition_mgmt.indexes_per_leaf(p_table_key text, p_legacy regclass)
returns integer
language sql stable
set search_path = ''
as $$
  select coalesce((select count(*)::integer from pg_catalog.pg_index i where i.indrelid = m.parent),
                  2 + (exists (select from pg_catalog.pg_attribute a where a.attrelid = p_legacy and a.attname = 'submission_id' and not a.attisdropped))::integer)
         + (select count(*)::integer from partition_mgmt.legacy_indexes(p_table_key, p_legacy) l
            where l.carried and (m.parent is null or l.reason is null))
  from partition_mgmt.managed_tables m where m.table_key = p_table_key
$$;

-- What a statement without the partition keys would lock on the tree plan_tree plans, and how
-- many such statements fit in the server's lock table at once.
create or replace function partition_mgmt.plan_lock_budget(p_table_key text, p_legacy regclass,
  out programs integer, out own_sites integer, out leaves integer, out relations integer, out keyless_locks bigint,
  out lock_capacity bigint, out keyless_at_once bigint)
language plpgsql
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_none integer;
  v_periods integer;
begin
  select count(*) filter (where t.level = 'program'), count(*) filter (where t.level = 'site'),
         count(*) filter (where t.level = 'site' and t.granularity = 'none'), count(*) filter (where t.level = 'period')
    into programs, own_sites, v_none, v_periods
  from partition_mgmt.plan_tree(p_table_key, p_legacy) t;
  -- root + root DEFAULT; per program: its partition and DEFAULT; per own site: its partition (the
  -- leaf, for 'none') and DEFAULT; per period: a leaf
  leaves := 1 + programs + own_sites + v_periods;
  relations := 2 + 2 * programs + 2 * own_sites - v_none + v_periods;
  keyless_locks := relations + leaves::bigint * partition_mgmt.indexes_per_leaf(p_table_key, p_legacy)
                   -- the DEFAULT leaves' own indexes: a sized tree's shared leaves have two more; a
                   -- root DEFAULT made while the table was sized keeps them after a switch to literal
                   + case when c.tree_shape = 'sized' then 2 + programs
                          else greatest(0, coalesce((select count(*)::integer from pg_catalog.pg_index i
                                 join partition_mgmt.partition_registry r on i.indrelid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
                                 where r.table_key = p_table_key and r.level = 'program' and r.is_default), 0)
                               - partition_mgmt.indexes_per_leaf(p_table_key, p_legacy)) end
                   -- the partitioned tables' (partitioned) indexes: each has the parent's
                   + case when partition_mgmt.partitioned_indexes_locked()
                          then (relations - leaves)::bigint * partition_mgmt.indexes_per_leaf(p_table_key, p_legacy) else 0 end;
  lock_capacity := partition_mgmt.lock_capacity();
  keyless_at_once := lock_capacity / greatest(keyless_locks, 1);
end
$$;

-- -----------------------------------------------------------------------------
-- Stats, budget and validation
-- -----------------------------------------------------------------------------
create or replace view partition_mgmt.v_partition_stats as
select r.partition_schema || '.' || r.partition_name as partition_name,
       r.table_key,
       m.partitioned_table as table_name,
       r.level,
       r.is_default,
       r.is_leaf,
       r.program_id,
       r.site_id,
       r.granularity,
       r.range_start,
       r.range_end,
       greatest(c.reltuples, 0)::bigint as rows_estimate,
       case when r.is_leaf then pg_catalog.pg_total_relation_size(c.oid) else
         (select coalesce(sum(pg_catalog.pg_total_relation_size(t.relid)), 0) from partition_mgmt.tree_members(c.oid) t where t.isleaf)
       end::bigint as size_bytes,
       greatest(s.last_analyze, s.last_autoanalyze) as last_analyze
from partition_mgmt.partition_registry r
join partition_mgmt.managed_tables m using (table_key)
left join pg_catalog.pg_class c on c.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
left join pg_catalog.pg_stat_all_tables s on s.relid = c.oid;
comment on view partition_mgmt.v_partition_stats is 'One row per partition: level, keys, bounds, estimated rows, size and last analyze.';

-- Leaf counts against the budget: planning and memory grow with leaves.
create or replace function partition_mgmt.leaf_budget_report()
returns table (table_key text, leaves bigint, defaults bigint, budget integer, over_budget boolean, advice text)
language sql stable
set search_path = ''
as $$
  -- every leaf counts, DEFAULT partitions included: each one costs planning time and memory
  select m.table_key,
         count(*) filter (where r.is_leaf),
         count(*) filter (where r.is_default),
         m.leaf_budget,
         count(*) filter (where r.is_leaf) > m.leaf_budget,
         case when count(*) filter (where r.is_leaf) > m.leaf_budget then
           format('%s leaves exceed the budget of %s: set low-volume sites to granularity ''none'' (partition_mgmt.set_site_granularity), archive ended programs, or raise managed_tables.leaf_budget if memory allows',
                  count(*) filter (where r.is_leaf), m.leaf_budget)
         else 'within budget' end
  from partition_mgmt.managed_tables m
  left join partition_mgmt.partition_registry r using (table_key)
  group by m.table_key, m.leaf_budget
$$;

-- The live trees against the server's lock table: what one statement without the partition keys
-- locks (every partition, every index of every leaf), and how many of them fit at once.
create or replace function partition_mgmt.lock_budget()
returns table (table_key text, relations bigint, leaves bigint, keyless_locks bigint, lock_capacity bigint,
               keyless_at_once bigint, minimum integer, status text, advice text)
language sql stable
set search_path = ''
as $$
  select m.table_key, t.relations, t.leaves, k.locks, partition_mgmt.lock_capacity(),
         partition_mgmt.lock_capacity() / greatest(k.locks, 1), m.min_keyless_statements,
         case when k.locks <= partition_mgmt.keyless_lock_allowance(m.min_keyless_statements) then 'ok' else 'over budget' end,
         case when k.locks <= partition_mgmt.keyless_lock_allowance(m.min_keyless_statements) then 'within budget'
              else format('a statement without the partition keys takes %s locks on %s (every partition, every index of every leaf); only %s fit in the lock table (%s slots) at once, fewer than %s. '
                          'Fewer leaves: raise target_rows_per_leaf (sized trees share small sites'' leaves), use coarser periods (set_site_granularity), '
                          'archive old periods (retention); or raise max_locks_per_transaction (supabase postgres-config update)',
                          k.locks, m.parent, partition_mgmt.lock_capacity() / greatest(k.locks, 1), partition_mgmt.lock_capacity(), m.min_keyless_statements) end
  from partition_mgmt.managed_tables m
  cross join lateral (select count(*) as relations, count(*) filter (where x.isleaf) as leaves from partition_mgmt.tree_members(m.parent) x) t
  cross join lateral (select partition_mgmt.keyless_statement_locks(m.parent) as locks) k
  where m.parent is not null
  order by m.table_key
$$;
comment on function partition_mgmt.lock_budget() is
  'Per partitioned table: the locks a statement without the partition keys takes, and how many such statements the server''s lock table holds at once (lock_capacity()).';

-- One row per managed table: the shape of its tree, its leaves and their rows, and what a
-- statement without the partition keys costs on it.
create or replace view partition_mgmt.v_tree_summary as
select m.table_key, m.tree_shape, m.target_rows_per_leaf,
       count(*) filter (where v.is_leaf) as leaves,
       count(*) filter (where v.is_leaf and v.is_default) as default_leaves,
       count(*) filter (where v.level = 'program' and not v.is_default) as programs_with_partitions,
       count(*) filter (where v.level = 'site' and not v.is_default) as sites_with_partitions,
       coalesce(sum(v.rows_estimate) filter (where v.is_leaf), 0)::bigint as rows_estimate,
       (avg(v.rows_estimate) filter (where v.is_leaf))::bigint as avg_rows_per_leaf,
       max(v.rows_estimate) filter (where v.is_leaf) as max_rows_per_leaf,
       coalesce(sum(v.size_bytes) filter (where v.is_leaf), 0)::bigint as size_bytes,
       b.keyless_locks, b.keyless_at_once, b.lock_capacity
from partition_mgmt.managed_tables m
left join partition_mgmt.v_partition_stats v on v.table_key = m.table_key
left join partition_mgmt.lock_budget() b on b.table_key = m.table_key
group by m.table_key, m.tree_shape, m.target_rows_per_leaf, b.keyless_locks, b.keyless_at_once, b.lock_capacity;
comment on view partition_mgmt.v_tree_summary is
  'Per managed table: tree shape, leaves (DEFAULT leaves among them), programs and sites with partitions of their own, estimated rows per leaf, and the locks a statement without the partition keys takes (how many fit at once).';

create or replace function partition_mgmt.validate_partitions()
returns table (check_name text, table_key text, status text, detail text)
language plpgsql stable
set search_path = ''
set jit = off  -- JIT compiles every leaf's expressions again in each statement: seconds per statement
as $$
declare
  m record;
  v_n bigint;
  v_detail text;
begin
  for m in select * from partition_mgmt.managed_tables order by table_key loop
    if m.parent is null then
      return query select 'parent exists', m.table_key, 'warning', format('no partitioned table yet: run partition_mgmt.create_partitioned_table(%L)', m.table_key);
      continue;
    end if;

    -- running programs must have their current-period partitions
    select count(*), string_agg(format('program %s site %s', s.program_id, s.site_id), '; ' order by s.program_id, s.site_id)
      into v_n, v_detail
    from public.sites s join public.pilot_programs p on p.program_id = s.program_id
    where p.end_date >= current_date and p.start_date <= current_date
      -- (in a sized tree, only the sites with time partitions of their own: the others share a leaf)
      and (m.tree_shape = 'literal' or exists (select from partition_mgmt.partition_registry o
           where o.table_key = m.table_key and o.level = 'site' and not o.is_default and not o.is_leaf and o.site_id = s.site_id))
      and not exists (select from partition_mgmt.partition_registry r
                      where r.table_key = m.table_key and r.program_id = s.program_id and r.site_id = s.site_id and not r.is_default
                        and r.is_leaf and (r.range_start is null or (r.range_start <= now() and r.range_end > now())));
    return query select 'current partitions for running programs', m.table_key,
      case when v_n = 0 then 'ok' else 'warning' end,
      case when v_n = 0 then 'every site of every running program has a partition for now()'
           else format('%s site(s) missing: %s. Run partition_mgmt.precreate_program_partitions(program_id).', v_n, left(v_detail, 500)) end;

    -- rows waiting in DEFAULT partitions
    select coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint, string_agg(r.partition_name, ', ')
      into v_n, v_detail
    from partition_mgmt.partition_registry r
    join pg_catalog.pg_class c on c.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
    where r.table_key = m.table_key and r.is_default and partition_mgmt.is_waiting_room(m.tree_shape, r.level)
      and exists (select from pg_catalog.pg_class x where x.oid = c.oid and (x.reltuples > 0 or x.relpages > 0));
    return query select 'rows in default partitions', m.table_key,
      case when v_detail is null then 'ok' else 'warning' end,
      case when v_detail is null then 'default partitions are empty'
           else format('about %s row(s) in %s; maintenance moves them into proper partitions', v_n, left(v_detail, 500)) end;

    -- every partition secured
    select count(*), string_agg(format('%I.%I', n.nspname, c.relname), ', ')
      into v_n, v_detail
    from partition_mgmt.tree_members(m.parent) t
    join pg_catalog.pg_class c on c.oid = t.relid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where t.level > 0 and (not c.relrowsecurity
      or has_table_privilege('anon', c.oid, 'select,insert,update,delete')
      or has_table_privilege('authenticated', c.oid, 'select,insert,update,delete')
      or n.nspname not in ('partitions'));
    return query select 'partitions secured', m.table_key,
      case when v_n = 0 then 'ok' else 'error' end,
      case when v_n = 0 then 'every partition has RLS on, no API-role privileges, and lives in schema partitions'
           else format('%s partition(s) exposed: %s', v_n, left(v_detail, 500)) end;

    -- registry and catalog agree
    select count(*), string_agg(x.name, ', ') into v_n, v_detail from (
      select format('%I.%I', n.nspname, c.relname) as name
      from partition_mgmt.tree_members(m.parent) t
      join pg_catalog.pg_class c on c.oid = t.relid join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where t.level > 0 and not exists (select from partition_mgmt.partition_registry r
                                         where r.partition_schema = n.nspname and r.partition_name = c.relname)
      union all
      select format('%I.%I', r.partition_schema, r.partition_name) from partition_mgmt.partition_registry r
      where r.table_key = m.table_key
        and not exists (select from partition_mgmt.tree_members(m.parent) t
                        where t.relid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name)))) x;
    return query select 'registry matches catalog', m.table_key,
      case when v_n = 0 then 'ok' else 'error' end,
      case when v_n = 0 then 'every partition is registered and every registered partition exists'
           else format('%s drifted: %s', v_n, left(v_detail, 500)) end;

    return query select 'leaf budget', b.table_key, case when b.over_budget then 'warning' else 'ok' end,
      format('%s leaves (%s of them defaults), budget %s: %s', b.leaves, b.defaults, b.budget, b.advice)
    from partition_mgmt.leaf_budget_report() b where b.table_key = m.table_key;

    return query select 'lock budget', l.table_key, case when l.status = 'ok' then 'ok' else 'warning' end,
      format('%s statements without the partition keys fit at once (each locks %s of %s slots; minimum %s): %s',
             l.keyless_at_once, l.keyless_locks, l.lock_capacity, l.minimum, l.advice)
    from partition_mgmt.lock_budget() l where l.table_key = m.table_key;
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Build the trees for the registered tables
-- -----------------------------------------------------------------------------
select partition_mgmt.create_partitioned_table(table_key) from partition_mgmt.managed_tables where parent is null order by table_key;

-- -----------------------------------------------------------------------------
-- The app's tables: the creation trigger on programs and sites (a literal tree's partitions; a
-- sized tree creates nothing on insert). Last in the file, under locks taken in short tries
-- (private.lock_for_ddl), so the app's writes wait for them only for the instant before commit.
-- -----------------------------------------------------------------------------
select private.report_deploy(format('trigger partition_mgmt_create_partitions on %s', t),
         case when exists (select from pg_catalog.pg_trigger g where g.tgrelid = t::regclass and g.tgname = 'partition_mgmt_create_partitions')
              then 'kept (existed)' else 'added' end,
         'AFTER INSERT: creates the partitions of a new program or site where a table uses the plan''s literal tree; does nothing for the sized tree (the default)')
from unnest(array['public.pilot_programs', 'public.sites']) t;
select private.lock_for_ddl(array['public.pilot_programs', 'public.sites'], 'share row exclusive');
create or replace trigger partition_mgmt_create_partitions after insert on public.pilot_programs
  for each row execute function partition_mgmt.on_program_or_site_insert();
create or replace trigger partition_mgmt_create_partitions after insert on public.sites
  for each row execute function partition_mgmt.on_program_or_site_insert();
