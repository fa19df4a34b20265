-- =============================================================================
-- The trees' configuration and registry: which tables are managed (managed_tables: key, columns,
-- tree shape, target rows per leaf), every partition the bundle made (partition_registry), rows
-- written without a program (rows_without_program). Schemas partition_mgmt and partitions.
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
comment on table partition_mgmt.rows_without_program is
  'Observations written without program_id (nullable in the legacy table): the partitioned table holds their site''s program (it follows the site), the legacy table (and <table>_old, through the reverse sync) the NULL.';
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

-- -----------------------------------------------------------------------------
-- Automatic creation: program, site and period partitions
-- -----------------------------------------------------------------------------

grant execute on function partition_mgmt.resolve_table_key(text) to authenticated, service_role;
grant execute on function partition_mgmt.config(text) to authenticated, service_role;

-- -----------------------------------------------------------------------------
-- State
-- -----------------------------------------------------------------------------

-- The change feed a swap created for a table stays its table after the migration ends (finalize
-- keeps it: Realtime subscribers read it): maintenance trims only this one, never a table of the
-- project's that happens to have the feed's name.
alter table partition_mgmt.managed_tables add column if not exists realtime_feed regclass;
comment on column partition_mgmt.managed_tables.realtime_feed is
  'The Realtime change feed the swap created for this table (public.<table>_changes); maintenance keeps an hour of it. NULL when there is none.';

-- -----------------------------------------------------------------------------
-- Settings and log
-- -----------------------------------------------------------------------------

alter table partition_mgmt.managed_tables
  add column if not exists retention_months integer check (retention_months is null or retention_months >= 1),
  add column if not exists retention_action text not null default 'archive' check (retention_action in ('archive', 'drop'));
comment on column partition_mgmt.managed_tables.retention_months is
  'Leaves entirely older than this many months are archived or dropped by maintenance. NULL (default): keep everything.';
comment on column partition_mgmt.managed_tables.retention_action is
  'archive: detach into schema partitions_archive (kept, hidden from the Data API); drop: detach and drop.';
