-- Partition tree (migration 20250102000200_partition_tree): the shape partition_mgmt builds.
-- Covers: both parents LIST (program_id) and registered in managed_tables; program partitions
-- LIST (site_id) and site partitions RANGE (created_at) with the right bounds; a DEFAULT partition at
-- every level (root, program, site); every partition in schema `partitions`; partition names at
-- most 63 bytes, registered under the name the catalog has, and recognisable
-- (<prefix>_p_<12 hex>_s_<12 hex>_YYYY_MM), also for hand-written seed ids that share a long prefix;
-- parent columns equal the legacy table's (names, types, order); a NEW managed table registered
-- after a column was added to (and another dropped from) its legacy table gets a parent with those
-- columns, defaults and CHECK constraints (enforced on the partitions), its random id default
-- replaced by time-ordered ids (UUID version 7); keys NOT NULL and in the
-- primary key; RLS on and no anon/authenticated privileges on every partition; the API roles
-- cannot use schema `partitions`; validate_partitions() all ok on a fresh tree; the leaf budget
-- warning when managed_tables.leaf_budget is below the leaf count.
begin;
select plan(57);
-- the plan's literal tree (every program, site and period, created on insert); 08 covers the sized tree
update partition_mgmt.managed_tables set tree_shape = 'literal';
-- the whole file is one transaction: let its partition DDL use most of the lock table
set local partition_mgmt.ddl_lock_budget = '4000';
set local timezone = 'UTC';

-- ---------------------------------------------------------------------------
-- Fixture: one company, one finished program (Jan-Mar 2024), two sites
-- ---------------------------------------------------------------------------
insert into public.companies (company_id, name) values ('c4000000-0000-4000-8000-000000000001', 'Tree Co');
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('4a000001-1111-4111-8111-111111111111', 'Tree program', '2024-01-01', '2024-03-31', 'c4000000-0000-4000-8000-000000000001');
insert into public.sites (site_id, program_id, name)
values ('4b000001-2222-4222-8222-222222222222', '4a000001-1111-4111-8111-111111111111', 'Site one'),
       ('4b000002-2222-4222-8222-222222222222', '4a000001-1111-4111-8111-111111111111', 'Site two');

-- every partition of every managed table, as the catalog has it
create temporary view tree as
select m.table_key, t.level as depth, c.oid, n.nspname::text collate "default" as schema_name,
       c.relname::text collate "default" as relname, c.relkind::text as relkind,
       c.relrowsecurity, pg_get_expr(c.relpartbound, c.oid) collate "default" as bound,
       pg_get_partkeydef(c.oid) collate "default" as partkey
from partition_mgmt.managed_tables m
cross join lateral pg_partition_tree(m.parent) t
join pg_class c on c.oid = t.relid
join pg_namespace n on n.oid = c.relnamespace
where t.level > 0;

-- ---------------------------------------------------------------------------
-- Parents
-- ---------------------------------------------------------------------------
select is(pg_get_partkeydef('public.petri_observations_partitioned'::regclass), 'LIST (program_id)',
  'petri parent is partitioned by LIST (program_id)');
select is(pg_get_partkeydef('public.gasifier_observations_partitioned'::regclass), 'LIST (program_id)',
  'gasifier parent is partitioned by LIST (program_id)');
select is((select parent from partition_mgmt.managed_tables where table_key = 'petri'), 'public.petri_observations_partitioned'::regclass,
  'managed_tables.parent points at the petri parent');
select is((select parent from partition_mgmt.managed_tables where table_key = 'gasifier'), 'public.gasifier_observations_partitioned'::regclass,
  'managed_tables.parent points at the gasifier parent');

-- ---------------------------------------------------------------------------
-- Levels, bounds and DEFAULT partitions
-- ---------------------------------------------------------------------------
select is(
  (select array_agg(distinct partkey) from tree where depth = 1 and bound <> 'DEFAULT'),
  array['LIST (site_id)'],
  'every program partition is partitioned by LIST (site_id)');
select is(
  (select array_agg(distinct partkey) from tree where depth = 2 and bound <> 'DEFAULT'),
  array['RANGE (created_at)'],
  'every (monthly) site partition is partitioned by RANGE (created_at)');
select is(
  (select array_agg(table_key order by table_key) from tree where depth = 1 and bound = 'DEFAULT' and relkind = 'r'),
  array['gasifier', 'petri'],
  'each parent has exactly one DEFAULT partition (root level)');
select is(
  (select count(*)::int from tree p where p.depth = 1 and p.relkind = 'p'
     and (select count(*) from pg_inherits i join pg_class d on d.oid = i.inhrelid
          where i.inhparent = p.oid and pg_get_expr(d.relpartbound, d.oid) = 'DEFAULT') = 1),
  (select count(*)::int from tree where depth = 1 and relkind = 'p'),
  'every program partition has its own DEFAULT partition');
select is(
  (select count(*)::int from tree s where s.depth = 2 and s.relkind = 'p'
     and (select count(*) from pg_inherits i join pg_class d on d.oid = i.inhrelid
          where i.inhparent = s.oid and pg_get_expr(d.relpartbound, d.oid) = 'DEFAULT') = 1),
  (select count(*)::int from tree where depth = 2 and relkind = 'p'),
  'every site partition has its own DEFAULT partition');
select cmp_ok((select count(*)::int from tree where depth = 2 and relkind = 'p'), '>=', 4,
  'the fixture built site partitions for both sites in both tables');

select is(
  (select bound from tree where relname = 'petri_p_4a0000011111'),
  $$FOR VALUES IN ('4a000001-1111-4111-8111-111111111111')$$,
  'the program partition holds exactly its program');
select is(
  (select bound from tree where relname = 'petri_p_4a0000011111_s_4b0000012222'),
  $$FOR VALUES IN ('4b000001-2222-4222-8222-222222222222')$$,
  'the site partition holds exactly its site');
select results_eq(
  $$select relname, bound from tree where table_key = 'petri' and depth = 3 and relname like 'petri_p_4a0000011111_s_4b0000012222_%' order by relname$$,
  $$values ('petri_p_4a0000011111_s_4b0000012222_2024_01'::text, 'FOR VALUES FROM (''2024-01-01 00:00:00+00'') TO (''2024-02-01 00:00:00+00'')'::text),
           ('petri_p_4a0000011111_s_4b0000012222_2024_02', 'FOR VALUES FROM (''2024-02-01 00:00:00+00'') TO (''2024-03-01 00:00:00+00'')'),
           ('petri_p_4a0000011111_s_4b0000012222_2024_03', 'FOR VALUES FROM (''2024-03-01 00:00:00+00'') TO (''2024-04-01 00:00:00+00'')'),
           ('petri_p_4a0000011111_s_4b0000012222_default', 'DEFAULT')$$,
  'a site of a Jan-Mar program has one leaf per UTC month with recognisable names, plus its DEFAULT');
select results_eq(
  $$select level, is_default, is_leaf, count(*)::int from partition_mgmt.partition_registry
    where table_key = 'petri' group by 1, 2, 3 order by 1, 2, 3$$,
  $$values ('period'::text, false, true, 6), ('period', true, true, 2), ('program', false, false, 1),
           ('program', true, true, 1), ('site', false, false, 2), ('site', true, true, 1)$$,
  'the registry classifies every petri partition by level, default and leaf');

-- ---------------------------------------------------------------------------
-- Placement and names
-- ---------------------------------------------------------------------------
select is((select count(*)::int from tree where schema_name <> 'partitions'), 0,
  'every partition lives in schema partitions');
select is((select max(octet_length(relname))::int <= 63 from tree), true,
  'every partition name fits in 63 bytes');
select set_eq(
  $$select schema_name, relname from tree$$,
  $$select partition_schema, partition_name from partition_mgmt.partition_registry$$,
  'the registry lists exactly the partitions the catalog has, under the same names');
select is(
  (select count(*)::int from tree where depth = 3 and relname !~ '^(petri|gas)_p_[0-9a-f]{12}_s_[0-9a-f]{12}_([0-9]{4}_[0-9]{2}|default)$'),
  0,
  'every leaf below a site is named <prefix>_p_<12 hex>_s_<12 hex>_YYYY_MM (or _default)');
select is(
  (select array_agg(relname order by relname) from tree where depth = 1 and bound = 'DEFAULT'),
  array['gas_default', 'petri_default'],
  'root DEFAULT partitions are named <prefix>_default');

-- ---------------------------------------------------------------------------
-- Columns and keys
-- ---------------------------------------------------------------------------
create temporary view columns_of as
select attrelid, attname::text collate "default" as attname, format_type(atttypid, atttypmod) as type,
       row_number() over (partition by attrelid order by attnum) as position
from pg_attribute where attnum > 0 and not attisdropped;

select results_eq(
  $$select attname, type, position from columns_of where attrelid = 'public.petri_observations_partitioned'::regclass order by position$$,
  $$select attname, type, position from columns_of where attrelid = 'public.petri_observations'::regclass order by position$$,
  'the petri parent has the legacy table''s columns: names, types, order');
select results_eq(
  $$select attname, type, position from columns_of where attrelid = 'public.gasifier_observations_partitioned'::regclass order by position$$,
  $$select attname, type, position from columns_of where attrelid = 'public.gasifier_observations'::regclass order by position$$,
  'the gasifier parent has the legacy table''s columns: names, types, order');
select results_eq(
  $$select attname, type, position from columns_of where attrelid = 'partitions.petri_p_4a0000011111_s_4b0000012222_2024_01'::regclass order by position$$,
  $$select attname, type, position from columns_of where attrelid = 'public.petri_observations'::regclass order by position$$,
  'a leaf partition has the same columns too');
select col_not_null('public', 'petri_observations_partitioned', 'observation_id', 'petri observation_id is NOT NULL');
select col_not_null('public', 'petri_observations_partitioned', 'program_id', 'petri program_id is NOT NULL');
select col_not_null('public', 'petri_observations_partitioned', 'site_id', 'petri site_id is NOT NULL');
select col_not_null('public', 'petri_observations_partitioned', 'created_at', 'petri created_at is NOT NULL');
select col_not_null('public', 'gasifier_observations_partitioned', 'program_id',
  'gasifier program_id is NOT NULL in the tree although nullable in the legacy table');
select col_is_pk('public', 'petri_observations_partitioned', array['observation_id', 'program_id', 'site_id', 'created_at'],
  'the petri primary key is (observation_id, program_id, site_id, created_at)');

-- ---------------------------------------------------------------------------
-- A new managed table: columns added to (and dropped from) the legacy table before its tree exists
-- ---------------------------------------------------------------------------
create table public.zz_probe_observations (
  observation_id uuid primary key default gen_random_uuid(),
  program_id     uuid,
  site_id        uuid,
  created_at     timestamptz not null default now(),
  reading        numeric(6, 2) default 1.5 constraint zz_probe_reading_positive check (reading >= 0),
  obsolete       text,
  label          text default 'none'
);
alter table public.zz_probe_observations drop column obsolete;
alter table public.zz_probe_observations
  add column added_later varchar(10) not null default 'late' constraint zz_probe_added_later_lower check (added_later = lower(added_later));
insert into partition_mgmt.managed_tables (table_key, source_table, partitioned_table, name_prefix, tree_shape)
values ('zzprobe', 'zz_probe_observations', 'zz_probe_observations_partitioned', 'zzp', 'literal');

select lives_ok($$select partition_mgmt.create_partitioned_table('zzprobe')$$,
  'create_partitioned_table builds the tree of a newly registered table');
select is((select parent from partition_mgmt.managed_tables where table_key = 'zzprobe'),
  'public.zz_probe_observations_partitioned'::regclass, 'and records its parent in managed_tables');
select results_eq(
  $$select attname, type, position from columns_of where attrelid = 'public.zz_probe_observations_partitioned'::regclass order by position$$,
  $$values ('observation_id'::text, 'uuid'::text, 1::bigint), ('program_id', 'uuid', 2), ('site_id', 'uuid', 3),
           ('created_at', 'timestamp with time zone', 4), ('reading', 'numeric(6,2)', 5), ('label', 'text', 6),
           ('added_later', 'character varying(10)', 7)$$,
  'the new parent has the legacy columns, the added one last and the dropped one gone');
select results_eq(
  $$select a.attname::text collate "default", pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d
    join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
    where d.adrelid = 'public.zz_probe_observations_partitioned'::regclass and a.attname <> 'observation_id' order by a.attnum$$,
  $$select a.attname::text collate "default", pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d
    join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
    where d.adrelid = 'public.zz_probe_observations'::regclass and a.attname <> 'observation_id' order by a.attnum$$,
  'the new parent carries the legacy column defaults, including the added column''s');
select matches(
  (select pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
   where d.adrelid = 'public.zz_probe_observations_partitioned'::regclass and a.attname = 'observation_id'),
  '^\(?encode\(set_bit\(set_bit\(OVERLAY\(uuid_send\(gen_random_uuid\(\)\) PLACING .*clock_timestamp\(\)',
  'where the legacy ids default to gen_random_uuid(), the new parent''s default to time-ordered ones (partition_mgmt.time_ordered_uuid_default())');
select results_eq(
  $$select conname::text collate "default", pg_get_constraintdef(oid) from pg_constraint
    where conrelid = 'public.zz_probe_observations_partitioned'::regclass and contype = 'c' order by conname$$,
  $$select conname::text collate "default", pg_get_constraintdef(oid) from pg_constraint
    where conrelid = 'public.zz_probe_observations'::regclass and contype = 'c' order by conname$$,
  'the new parent carries the legacy CHECK constraints, including the added column''s');
select col_not_null('public', 'zz_probe_observations_partitioned', 'program_id', 'the new parent''s keys are NOT NULL');
select is(
  (select count(*)::int from partition_mgmt.partition_registry where table_key = 'zzprobe' and level = 'period' and not is_default),
  6, 'the new table got partitions for the existing program and sites at once');
select throws_ok(
  $$insert into public.zz_probe_observations_partitioned (program_id, site_id, created_at, added_later)
    values ('4a000001-1111-4111-8111-111111111111', '4b000001-2222-4222-8222-222222222222', '2024-01-10', 'UPPER')$$,
  '23514', null, 'the added column''s CHECK is enforced on the partitions');
select lives_ok(
  $$insert into public.zz_probe_observations_partitioned (program_id, site_id, created_at)
    values ('4a000001-1111-4111-8111-111111111111', '4b000001-2222-4222-8222-222222222222', '2024-01-10')$$,
  'a row relying on the carried-over defaults is accepted');
select is(
  (select (reading, label, added_later)::text from public.zz_probe_observations_partitioned),
  '(1.50,none,late)', 'the carried-over defaults fill the row');
select ok(
  (select substr(observation_id::text, 15, 1) = '7' and substr(observation_id::text, 20, 1) in ('8', '9', 'a', 'b')
          and abs(('x' || lpad(replace(left(observation_id::text, 13), '-', ''), 16, '0'))::bit(64)::bigint
                  - floor(extract(epoch from clock_timestamp()) * 1000)::bigint) < 60000
   from public.zz_probe_observations_partitioned),
  'the row''s id is a UUID of version 7 (RFC 9562 variant) whose first 48 bits are the time of the insert in milliseconds');

-- the pre-check says so before anything is built, and time_ordered_ids = false keeps random ids
select matches(
  (select detail from partition_mgmt.pre_migration_check('petri') where check_name = 'new ids'),
  '^observation_id defaults to a random UUID \(gen_random_uuid\(\)\); on the partitioned table new ids default to time-ordered ones \(UUID version 7',
  'pre_migration_check tells that new ids will be time-ordered, and how to keep the random default');
create table public.zz_keep_observations (
  observation_id uuid primary key default gen_random_uuid(),
  program_id     uuid,
  site_id        uuid,
  created_at     timestamptz not null default now()
);
insert into partition_mgmt.managed_tables (table_key, source_table, partitioned_table, name_prefix, tree_shape, time_ordered_ids)
values ('zzkeep', 'zz_keep_observations', 'zz_keep_observations_partitioned', 'zzk', 'sized', false);
select is((select detail from partition_mgmt.pre_migration_check('zzkeep') where check_name = 'new ids'),
  'observation_id keeps its random UUID default (time_ordered_ids = false)', 'the pre-check tells the random default is kept');
select partition_mgmt.create_partitioned_table('zzkeep');
select is(
  (select pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
   where d.adrelid = 'public.zz_keep_observations_partitioned'::regclass and a.attname = 'observation_id'),
  'gen_random_uuid()', 'with time_ordered_ids = false the parent keeps the legacy random default');

-- ---------------------------------------------------------------------------
-- Security of the partitions
-- ---------------------------------------------------------------------------
select is((select count(*)::int from tree where not relrowsecurity), 0, 'RLS is enabled on every partition');
select is((select count(*)::int from tree where has_table_privilege('anon', oid, 'select,insert,update,delete,truncate,references,trigger')), 0,
  'anon has no privilege on any partition');
select is((select count(*)::int from tree where has_table_privilege('authenticated', oid, 'select,insert,update,delete,truncate,references,trigger')), 0,
  'authenticated has no privilege on any partition');
select ok(not has_schema_privilege('anon', 'partitions', 'usage') and not has_schema_privilege('authenticated', 'partitions', 'usage'),
  'anon and authenticated cannot use schema partitions');
set local role anon;
select throws_ok($$select * from partitions.petri_p_4a0000011111_s_4b0000012222_2024_01$$, '42501', null,
  'anon naming a partition directly is refused');
reset role;

-- ---------------------------------------------------------------------------
-- Validation and leaf budget
-- ---------------------------------------------------------------------------
select is_empty($$select * from partition_mgmt.validate_partitions() where status <> 'ok'$$,
  'validate_partitions() reports every check ok on a fresh tree');
update partition_mgmt.managed_tables set leaf_budget = 3 where table_key = 'petri';
select is(
  (select format('%s leaves, over budget: %s', leaves, over_budget::text) from partition_mgmt.leaf_budget_report() where table_key = 'petri'),
  (select format('%s leaves, over budget: true', count(*)) from partition_mgmt.partition_registry where table_key = 'petri' and is_leaf),
  'leaf_budget_report counts every leaf (DEFAULT partitions included) and flags petri once its budget is below that count');
select is(
  (select status from partition_mgmt.validate_partitions() where check_name = 'leaf budget' and table_key = 'petri'),
  'warning', 'validate_partitions() warns about the leaf budget');

-- ---------------------------------------------------------------------------
-- Hand-written seed ids that share a long prefix (00000000-0000-4000-8000-00000000000N): the
-- short aliases grow by 4 hex digits per clash, and the names must still fit in 63 bytes.
-- ---------------------------------------------------------------------------
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
select format('00000000-0000-4000-8000-00000000000%s', i)::uuid, 'Seed program ' || i, '2024-01-01', '2024-01-31',
       'c4000000-0000-4000-8000-000000000001'
from generate_series(1, 3) i;
select lives_ok(
  $$insert into public.sites (site_id, program_id, name)
    values ('00000000-0000-4000-8000-000000000011', '00000000-0000-4000-8000-000000000003', 'Seed site 1')$$,
  'seed site 1 (its id shares 31 hex digits with the seed programs'') can be inserted');
select lives_ok(
  $$insert into public.sites (site_id, program_id, name)
    values ('00000000-0000-4000-8000-000000000012', '00000000-0000-4000-8000-000000000003', 'Seed site 2')$$,
  'seed site 2 can be inserted');
select lives_ok(
  $$insert into public.sites (site_id, program_id, name)
    values ('00000000-0000-4000-8000-000000000013', '00000000-0000-4000-8000-000000000003', 'Seed site 3')$$,
  'seed site 3 can be inserted');
select is(
  (select string_agg(partition_name, ', ' order by partition_name) from partition_mgmt.partition_registry
   where octet_length(partition_name) > 63),
  null, 'no partition name of the seed tree is longer than 63 bytes');
select set_eq(
  $$select schema_name, relname from tree$$,
  $$select partition_schema, partition_name from partition_mgmt.partition_registry$$,
  'with the seed tree, the registry still lists exactly the partitions the catalog has');
select is(
  (select count(*)::int from partition_mgmt.partition_registry
   where table_key = 'petri' and level = 'period' and not is_default and program_id = '00000000-0000-4000-8000-000000000003'),
  3, 'each seed site got its January 2024 leaf');

select * from finish();
rollback;
