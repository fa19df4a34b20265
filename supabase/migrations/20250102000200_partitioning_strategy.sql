-- =============================================================================
-- Partitioning strategy (the plan's 004): Program (LIST) -> Site (LIST) -> Period (RANGE).
--
-- partition_mgmt owns the tree: which tables are managed (data, not code branches), the registry
-- of every partition, automatic creation (on program/site insert and on demand), the key table
-- that keeps observation_id unique across the whole tree and routes id-only statements, and the
-- stats and validation that maintenance and operators read.
--
-- Child partitions live in the schema `partitions`, which the Data API does not expose and the
-- API roles cannot use; each partition also has RLS enabled and no privileges for anon or
-- authenticated, so naming a partition directly reveals nothing.
-- =============================================================================

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
  default_granularity  text not null default 'month' check (default_granularity in ('month', 'week', 'none')),
  premake_months       integer not null default 3 check (premake_months between 0 and 36),
  leaf_budget          integer not null default 5000 check (leaf_budget > 0),
  -- the partitioned parent once created; regclass follows it through the swap's renames
  parent               regclass,
  created_at           timestamptz not null default now(),
  unique (name_prefix),
  unique (source_schema, source_table)
);
comment on table partition_mgmt.managed_tables is
  'One row per table partitioned Program -> Site -> Period. Adding a row (and calling create_partitioned_table) is all it takes to manage another table.';

create table if not exists partition_mgmt.site_granularity (
  table_key    text not null references partition_mgmt.managed_tables (table_key) on delete cascade,
  site_id      uuid not null,
  granularity  text not null check (granularity in ('month', 'week', 'none')),
  updated_at   timestamptz not null default now(),
  primary key (table_key, site_id)
);
comment on table partition_mgmt.site_granularity is
  'Per-site time split (weekly for high-volume sites, none for tiny ones). Applies to partitions created after the setting.';

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
  granularity       text check (granularity in ('month', 'week', 'none')),
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

insert into partition_mgmt.managed_tables (table_key, source_table, partitioned_table, name_prefix)
values ('petri', 'petri_observations', 'petri_observations_partitioned', 'petri'),
       ('gasifier', 'gasifier_observations', 'gasifier_observations_partitioned', 'gas')
on conflict (table_key) do nothing;

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
  execute format('revoke all on table %I.%I from public, anon, authenticated', p_schema, p_name);
  execute format('grant all on table %I.%I to service_role', p_schema, p_name);
end
$$;

-- UTC period containing p_ts for a granularity ('month' or 'week').
create or replace function partition_mgmt.period_bounds(p_granularity text, p_ts timestamptz, out range_start timestamptz, out range_end timestamptz)
language plpgsql immutable
set search_path = ''
as $$
begin
  if p_granularity = 'week' then
    range_start := date_trunc('week', p_ts at time zone 'UTC') at time zone 'UTC';
    range_end := range_start + interval '7 days';
  elsif p_granularity = 'month' then
    range_start := date_trunc('month', p_ts at time zone 'UTC') at time zone 'UTC';
    range_end := (date_trunc('month', p_ts at time zone 'UTC') + interval '1 month') at time zone 'UTC';
  else
    raise exception 'granularity "%" has no periods', p_granularity using hint = 'Use month or week.';
  end if;
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
  if p_granularity not in ('month', 'week', 'none') then
    raise exception 'invalid granularity "%" for site %', p_granularity, p_site_id using hint = 'Use month, week or none.';
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
    perform partition_mgmt.run_ddl(format('lock table %s in share row exclusive mode', v_parent));
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
-- by the references of migration 0700 when the update also moved the row, which then arrives as a
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
create or replace function partition_mgmt.install_key_trigger(p_table_key text)
returns void
language plpgsql
set search_path = ''
as $install$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  v_fn text := format('%s_maintain_keys', c.table_key);
  v_move_fn text := format('%s_move_keys', c.table_key);
begin
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
      end if;
      return new;
    end
    $body$
    $f$, v_fn, c.table_key, c.id_column, c.program_column, c.site_column, c.time_column, c.partitioned_table);
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

-- Creates the partitioned parent of a managed table from the live legacy table: same columns,
-- types, defaults, CHECK constraints and comments (so a column the app added later comes along),
-- keys NOT NULL, the indexes every leaf needs, the legacy table's RLS policies and grants, the
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
  execute format('revoke all on table %s from public, anon, authenticated, service_role', v_parent);
  for v_pol in
    select grantee, string_agg(privilege_type, ', ') as privs
    from information_schema.role_table_grants
    where table_schema = c.source_schema and table_name = c.source_table and grantee <> current_user
    group by grantee
  loop
    execute format('grant %s on table %s to %I', v_pol.privs, v_parent,
      v_pol.grantee);
  end loop;

  -- The legacy table's trigger that keeps company_id filled comes along (same function).
  for v_trg in
    select t.tgname, pg_catalog.pg_get_triggerdef(t.oid) as def
    from pg_catalog.pg_trigger t
    where t.tgrelid = v_source and not t.tgisinternal
      and t.tgfoid = to_regprocedure('private.set_company_id_from_program()')
  loop
    execute replace(v_trg.def, format(' ON %s ', v_source), format(' ON %s ', v_parent));
  end loop;

  perform partition_mgmt.attach_key_triggers(c.table_key, v_parent);

  -- The root DEFAULT partition: rows for a program that has no partition yet are never rejected.
  execute format('create table partitions.%I partition of %s default', v_default, v_parent);
  perform partition_mgmt.secure_partition('partitions', v_default);
  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf)
  values ('partitions', v_default, c.table_key, 'program', true, true);

  update partition_mgmt.managed_tables set parent = v_parent where table_key = c.table_key;

  if p_precreate then
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

  -- Rows of this program that landed in the root default move here in the same step, so the
  -- ATTACH never fails with "updated partition constraint for default partition would be violated".
  select format('%I.%I', partition_schema, partition_name)::regclass into v_root_default
  from partition_mgmt.partition_registry where table_key = p_table_key and level = 'program' and is_default;
  perform partition_mgmt.stash_rows(v_root_default, format('%I = %L', c.program_column, p_program_id));
  perform partition_mgmt.run_ddl(format('alter table %s attach partition partitions.%I for values in (%L)', v_parent, v_name, p_program_id));
  perform partition_mgmt.unstash_rows(format('partitions.%I', v_name)::regclass);

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id)
  values ('partitions', v_name, p_table_key, 'program', false, false, p_program_id),
         ('partitions', v_default_part, p_table_key, 'site', true, true, p_program_id);
  return format('partitions.%I', v_name);
end
$$;

-- Site partition: RANGE by time with its own DEFAULT, or a single leaf when the site's
-- granularity is 'none'. Returns its qualified name.
create or replace function partition_mgmt.ensure_site_partition(p_table_key text, p_program_id uuid, p_site_id uuid)
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

  v_gran := partition_mgmt.site_granularity_for(p_table_key, p_site_id);
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

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id, granularity)
  values ('partitions', v_name, p_table_key, 'site', false, v_gran = 'none', p_program_id, p_site_id, v_gran);
  if v_default_part is not null then
    insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id)
    values ('partitions', v_default_part, p_table_key, 'period', true, true, p_program_id, p_site_id);
  end if;
  return format('partitions.%I', v_name);
end
$$;

-- Leaf for the period containing p_ts at the site's granularity (clipped so it never overlaps a
-- leaf made under an earlier granularity). Returns its qualified name.
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
  v_suffix text;
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

  select * into v_lo, v_hi from partition_mgmt.period_bounds(
    case when partition_mgmt.site_granularity_for(p_table_key, p_site_id) = 'week' then 'week' else 'month' end, p_ts);
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

  v_gran := case when v_hi - v_lo <= interval '7 days' and partition_mgmt.site_granularity_for(p_table_key, p_site_id) = 'week' then 'week' else 'month' end;
  v_suffix := case when v_gran = 'week' then to_char(v_lo at time zone 'UTC', 'IYYY"w"IW') else to_char(v_lo at time zone 'UTC', 'YYYY_MM') end;
  v_name := format('%s_%s', trim(both '"' from split_part(v_site_part, '.', 2)), v_suffix);
  if exists (select from partition_mgmt.partition_registry where partition_schema = 'partitions' and partition_name = v_name) then
    v_name := v_name || to_char(v_lo at time zone 'UTC', '_DD');
  end if;

  execute format('create table partitions.%I (like %s including defaults including constraints including generated including storage)', v_name, v_site_part);
  execute format('alter table partitions.%I add constraint %I check (%I >= %L and %I < %L)',
    v_name, v_name || '_bound', c.time_column, v_lo, c.time_column, v_hi);
  perform partition_mgmt.secure_partition('partitions', v_name);
  perform partition_mgmt.stash_rows(format('%s_default', v_site_part)::regclass,
    format('%I >= %L and %I < %L', c.time_column, v_lo, c.time_column, v_hi));
  perform partition_mgmt.run_ddl(format('alter table %s attach partition partitions.%I for values from (%L) to (%L)', v_site_part, v_name, v_lo, v_hi));
  perform partition_mgmt.unstash_rows(format('partitions.%I', v_name)::regclass);

  insert into partition_mgmt.partition_registry (partition_schema, partition_name, table_key, level, is_default, is_leaf, program_id, site_id, granularity, range_start, range_end)
  values ('partitions', v_name, p_table_key, 'period', false, true, p_program_id, p_site_id, v_gran, v_lo, v_hi);
  return format('partitions.%I', v_name);
end
$$;

-- The plan's entry point: the program's partition, one per site, and the periods from the
-- program's start_date to its end_date, but for a running program only up to the premake horizon
-- (today + premake_months; maintenance moves the horizon forward every night). Idempotent.
-- Returns the number of partitions created.
create or replace function partition_mgmt.precreate_program_partitions(p_program_id uuid, p_table_key text default null, p_site_id uuid default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_prog record;
  v_site record;
  v_table record;
  v_before int;
  v_horizon timestamptz;
  v_ts timestamptz;
  v_leaf text;
begin
  select program_id, start_date, end_date into v_prog from public.pilot_programs where program_id = p_program_id;
  if not found then
    raise exception 'pilot program % does not exist', p_program_id using hint = 'Pass a program_id from public.pilot_programs.';
  end if;
  select count(*) into v_before from partition_mgmt.partition_registry;
  for v_table in
    select * from partition_mgmt.managed_tables
    where parent is not null and (p_table_key is null or table_key = p_table_key)
    order by table_key
  loop
    perform partition_mgmt.ensure_program_partition(v_table.table_key, v_prog.program_id);
    v_horizon := least((v_prog.end_date + 1)::timestamp at time zone 'UTC',
                       (date_trunc('month', now() at time zone 'UTC') + make_interval(months => v_table.premake_months + 1)) at time zone 'UTC');
    for v_site in select site_id from public.sites where program_id = v_prog.program_id and (p_site_id is null or site_id = p_site_id) order by site_id loop
      perform partition_mgmt.ensure_site_partition(v_table.table_key, v_prog.program_id, v_site.site_id);
      v_ts := v_prog.start_date::timestamp at time zone 'UTC';
      while v_ts < v_horizon loop
        v_leaf := partition_mgmt.ensure_period_partition(v_table.table_key, v_prog.program_id, v_site.site_id, v_ts);
        select range_end into v_ts from partition_mgmt.partition_registry
        where format('%I.%I', partition_schema, partition_name) = v_leaf;
        exit when v_ts is null;   -- granularity 'none': one leaf covers all time
      end loop;
    end loop;
  end loop;
  return (select count(*) from partition_mgmt.partition_registry) - v_before;
end
$$;
revoke all on function partition_mgmt.precreate_program_partitions(uuid, text, uuid) from public;
grant execute on function partition_mgmt.precreate_program_partitions(uuid, text, uuid) to service_role;

-- Partitions are created with the program or site row, in the same transaction. A lock that
-- cannot be had within the retries must not fail the app's insert: the rows then land in a
-- DEFAULT partition and maintenance creates the partition later.
create or replace function partition_mgmt.on_program_or_site_insert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  begin
    if tg_table_name = 'pilot_programs' then
      perform partition_mgmt.precreate_program_partitions(new.program_id);
    else
      perform partition_mgmt.precreate_program_partitions((to_jsonb(new) ->> 'program_id')::uuid, null, (to_jsonb(new) ->> 'site_id')::uuid);
    end if;
  exception when lock_not_available then
    raise warning 'partitions for % % not created now (lock busy); maintenance will create them', tg_table_name,
      case when tg_table_name = 'pilot_programs' then new.program_id::text else (to_jsonb(new) ->> 'site_id') end;
  end;
  return new;
end
$$;
revoke all on function partition_mgmt.on_program_or_site_insert() from public;

drop trigger if exists partition_mgmt_create_partitions on public.pilot_programs;
create trigger partition_mgmt_create_partitions after insert on public.pilot_programs
  for each row execute function partition_mgmt.on_program_or_site_insert();
drop trigger if exists partition_mgmt_create_partitions on public.sites;
create trigger partition_mgmt_create_partitions after insert on public.sites
  for each row execute function partition_mgmt.on_program_or_site_insert();

-- -----------------------------------------------------------------------------
-- Routed access by id: one leaf instead of planning every partition
-- -----------------------------------------------------------------------------

-- Keys of one observation (nothing of its content). SECURITY DEFINER so API roles can route
-- without reading the key table; the statement that follows still runs under RLS.
create or replace function partition_mgmt.route(p_table_key text, p_observation_id uuid,
  out program_id uuid, out site_id uuid, out created_at timestamptz)
language sql stable
security definer
set search_path = ''
as $$
  select k.program_id, k.site_id, k.created_at from partition_mgmt.observation_keys k
  where k.table_key = p_table_key and k.observation_id = p_observation_id
$$;
revoke all on function partition_mgmt.route(text, uuid) from public;
grant execute on function partition_mgmt.route(text, uuid) to authenticated, service_role;
grant usage on schema partition_mgmt to authenticated;
grant select on partition_mgmt.managed_tables to authenticated, service_role;

-- The table the app reads and writes for a managed table right now: the partitioned parent once
-- it has been swapped in under the legacy name, the legacy table before that.
create or replace function partition_mgmt.live_table(p_table_key text)
returns regclass
language sql stable
set search_path = ''
as $$
  select format('%I.%I', source_schema, source_table)::regclass from partition_mgmt.managed_tables where table_key = p_table_key
$$;

create or replace function partition_mgmt.routed_predicate(p_table_key text, p_observation_id uuid)
returns text
language plpgsql stable
set search_path = ''
as $$
declare
  c partition_mgmt.managed_tables := partition_mgmt.config(p_table_key);
  r record;
begin
  if p_observation_id is null then
    raise exception 'observation_id must not be null' using hint = 'Pass the id of the observation.';
  end if;
  if (select relkind from pg_catalog.pg_class where oid = partition_mgmt.live_table(p_table_key)) <> 'p' then
    return format('%I = %L', c.id_column, p_observation_id);    -- not partitioned (yet): the primary key finds it
  end if;
  select * into r from partition_mgmt.route(p_table_key, p_observation_id);
  if r.program_id is null then
    return 'false';
  end if;
  -- literal keys: the planner prunes to the one leaf at plan time
  return format('%I = %L and %I = %L and %I = %L and %I = %L', c.id_column, p_observation_id,
    c.program_column, r.program_id, c.site_column, r.site_id, c.time_column, r.created_at);
end
$$;

-- public API -------------------------------------------------------------------
create or replace function public.get_observation_by_id(p_table text, p_observation_id uuid)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  v_row jsonb;
begin
  execute format('select to_jsonb(t) from %s t where %s', partition_mgmt.live_table(v_key),
    partition_mgmt.routed_predicate(v_key, p_observation_id)) into v_row;
  return v_row;
end
$$;

create or replace function public.update_observation_by_id(p_table text, p_observation_id uuid, p_changes jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  v_live regclass := partition_mgmt.live_table(v_key);
  v_cols text;
  v_unknown text;
  v_row jsonb;
begin
  if p_changes is null or jsonb_typeof(p_changes) <> 'object' or p_changes = '{}'::jsonb then
    raise exception 'p_changes must be a non-empty JSON object of column -> new value, got %', coalesce(p_changes::text, 'null');
  end if;
  select string_agg(k, ', ') into v_unknown from jsonb_object_keys(p_changes) k
  where not exists (select from pg_catalog.pg_attribute a where a.attrelid = v_live and a.attname = k and a.attnum > 0 and not a.attisdropped);
  if v_unknown is not null then
    raise exception 'unknown column(s) for %: %', v_live, v_unknown using hint = 'Keys of p_changes must be column names of the table.';
  end if;
  select string_agg(format('%I', k), ', ') into v_cols from jsonb_object_keys(p_changes) k;
  execute format('update %1$s t set (%2$s) = (select %2$s from jsonb_populate_record(null::%1$s, $1)) where %3$s returning to_jsonb(t)',
    v_live, v_cols, partition_mgmt.routed_predicate(v_key, p_observation_id))
    into v_row using p_changes;
  return v_row;
end
$$;

create or replace function public.delete_observation_by_id(p_table text, p_observation_id uuid)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_key text := partition_mgmt.resolve_table_key(p_table);
  v_count int;
begin
  execute format('delete from %s where %s', partition_mgmt.live_table(v_key), partition_mgmt.routed_predicate(v_key, p_observation_id));
  get diagnostics v_count = row_count;
  return v_count > 0;
end
$$;

comment on function public.update_observation_by_id(text, uuid, jsonb) is
  'Routed update by id: looks up the row''s partition keys and updates with them, so only one leaf is planned. Use instead of .update().eq(''observation_id'', …) on a partitioned table. RLS applies.';
comment on function public.delete_observation_by_id(text, uuid) is
  'Routed delete by id (one leaf planned). RLS applies.';
comment on function public.get_observation_by_id(text, uuid) is
  'Routed fetch by id (one leaf planned), as JSON. RLS applies.';
revoke all on function public.get_observation_by_id(text, uuid) from public, anon;
revoke all on function public.update_observation_by_id(text, uuid, jsonb) from public, anon;
revoke all on function public.delete_observation_by_id(text, uuid) from public, anon;
grant execute on function public.get_observation_by_id(text, uuid) to authenticated, service_role;
grant execute on function public.update_observation_by_id(text, uuid, jsonb) to authenticated, service_role;
grant execute on function public.delete_observation_by_id(text, uuid) to authenticated, service_role;
grant execute on function partition_mgmt.resolve_table_key(text), partition_mgmt.live_table(text),
  partition_mgmt.routed_predicate(text, uuid), partition_mgmt.config(text) to authenticated, service_role;

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
         (select coalesce(sum(pg_catalog.pg_total_relation_size(t.relid)), 0) from pg_catalog.pg_partition_tree(c.oid) t where t.isleaf)
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
    where r.table_key = m.table_key and r.is_default
      and exists (select from pg_catalog.pg_class x where x.oid = c.oid and (x.reltuples > 0 or x.relpages > 0));
    return query select 'rows in default partitions', m.table_key,
      case when v_detail is null then 'ok' else 'warning' end,
      case when v_detail is null then 'default partitions are empty'
           else format('about %s row(s) in %s; maintenance moves them into proper partitions', v_n, left(v_detail, 500)) end;

    -- every partition secured
    select count(*), string_agg(format('%I.%I', n.nspname, c.relname), ', ')
      into v_n, v_detail
    from pg_catalog.pg_partition_tree(m.parent) t
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
      from pg_catalog.pg_partition_tree(m.parent) t
      join pg_catalog.pg_class c on c.oid = t.relid join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where t.level > 0 and not exists (select from partition_mgmt.partition_registry r
                                         where r.partition_schema = n.nspname and r.partition_name = c.relname)
      union all
      select format('%I.%I', r.partition_schema, r.partition_name) from partition_mgmt.partition_registry r
      where r.table_key = m.table_key
        and not exists (select from pg_catalog.pg_partition_tree(m.parent) t
                        where t.relid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name)))) x;
    return query select 'registry matches catalog', m.table_key,
      case when v_n = 0 then 'ok' else 'error' end,
      case when v_n = 0 then 'every partition is registered and every registered partition exists'
           else format('%s drifted: %s', v_n, left(v_detail, 500)) end;

    return query select 'leaf budget', b.table_key, case when b.over_budget then 'warning' else 'ok' end,
      format('%s leaves (%s of them defaults), budget %s: %s', b.leaves, b.defaults, b.budget, b.advice)
    from partition_mgmt.leaf_budget_report() b where b.table_key = m.table_key;
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- Build the trees for the registered tables
-- -----------------------------------------------------------------------------
select partition_mgmt.create_partitioned_table(table_key) from partition_mgmt.managed_tables where parent is null order by table_key;
