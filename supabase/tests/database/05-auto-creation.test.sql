-- Automatic partition creation (migration 20250102000200_partition_tree).
-- Covers: inserting a program creates its program partitions and inserting sites creates site and
-- month partitions, in the same transaction, for both managed tables; months run from the start
-- date's month through the end date's month (end date inclusive); precreate_program_partitions,
-- ensure_program_partition and ensure_site_partition are idempotent (a second precreate returns 0);
-- the premake horizon stops a long-running program at start of this month + premake_months;
-- an observation for a month without a leaf lands in the site's DEFAULT partition, and
-- ensure_period_partition for that month succeeds, moves the row into the new leaf (keys kept) and
-- leaves the DEFAULT empty; a row for a site not in the tree lands in the program's DEFAULT and
-- moves down when the site is inserted; a row for a program not in the tree lands in the root
-- DEFAULT and moves down when its partitions are created; weekly granularity gives ISO-week
-- leaves named _IYYYwIW; 'none' gives a single leaf site partition; changing granularity later
-- leaves existing partitions alone and never creates overlapping ranges (registry and catalog
-- bounds agree).
begin;
select plan(41);
-- the plan's literal tree (every program, site and period, created on insert); 08 covers the sized tree
update partition_mgmt.managed_tables set tree_shape = 'literal';
-- the whole file is one transaction: let its partition DDL use most of the lock table
set local partition_mgmt.ddl_lock_budget = '4000';
set local timezone = 'UTC';

insert into public.companies (company_id, name) values ('c5000000-0000-4000-8000-000000000001', 'Auto Co');

-- ---------------------------------------------------------------------------
-- Program and sites inserted: partitions appear in the same transaction
-- ---------------------------------------------------------------------------
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('5a000001-0000-4000-8000-000000000001', 'Finished program', '2024-01-15', '2024-03-01', 'c5000000-0000-4000-8000-000000000001');

select results_eq(
  $$select table_key, level, is_default from partition_mgmt.partition_registry
    where program_id = '5a000001-0000-4000-8000-000000000001' order by table_key, level, is_default$$,
  $$values ('gasifier'::text, 'program'::text, false), ('gasifier', 'site', true), ('petri', 'program', false), ('petri', 'site', true)$$,
  'inserting a program creates its program partition and program DEFAULT for both tables');
select isnt(to_regclass('partitions.petri_p_5a0000010000'), null, 'the program partition exists in the catalog');

insert into public.sites (site_id, program_id, name)
values ('5b000001-0000-4000-8000-000000000001', '5a000001-0000-4000-8000-000000000001', 'Site 1'),
       ('5b000002-0000-4000-8000-000000000001', '5a000001-0000-4000-8000-000000000001', 'Site 2');

select results_eq(
  $$select table_key, count(*) filter (where level = 'site' and not is_default)::int,
           count(*) filter (where level = 'period' and is_default)::int,
           count(*) filter (where level = 'period' and not is_default)::int
    from partition_mgmt.partition_registry where program_id = '5a000001-0000-4000-8000-000000000001'
    group by table_key order by table_key$$,
  $$values ('gasifier'::text, 2, 2, 6), ('petri', 2, 2, 6)$$,
  'inserting two sites creates two site partitions with DEFAULTs and three months each, for both tables');
select results_eq(
  $$select range_start, range_end from partition_mgmt.partition_registry
    where table_key = 'petri' and site_id = '5b000001-0000-4000-8000-000000000001' and level = 'period' and not is_default
    order by range_start$$,
  $$values ('2024-01-01 00:00+00'::timestamptz, '2024-02-01 00:00+00'::timestamptz),
           ('2024-02-01 00:00+00', '2024-03-01 00:00+00'), ('2024-03-01 00:00+00', '2024-04-01 00:00+00')$$,
  'months run from the start date''s month through the end date''s month (end date inclusive)');
select is(
  (select count(*)::int from partition_mgmt.partition_registry r
   where r.program_id = '5a000001-0000-4000-8000-000000000001'
     and to_regclass(format('%I.%I', r.partition_schema, r.partition_name)) is null),
  0, 'every registered partition of the program exists in the catalog');

-- ---------------------------------------------------------------------------
-- Idempotence
-- ---------------------------------------------------------------------------
select is(partition_mgmt.precreate_program_partitions('5a000001-0000-4000-8000-000000000001'), 0,
  'precreate_program_partitions on a complete program creates nothing');
select is(partition_mgmt.precreate_program_partitions('5a000001-0000-4000-8000-000000000001'), 0,
  'and a second call still creates nothing');
select is(partition_mgmt.ensure_program_partition('petri', '5a000001-0000-4000-8000-000000000001'),
  'partitions.petri_p_5a0000010000', 'ensure_program_partition returns the existing program partition');
select is(partition_mgmt.ensure_site_partition('petri', '5a000001-0000-4000-8000-000000000001', '5b000001-0000-4000-8000-000000000001'),
  'partitions.petri_p_5a0000010000_s_5b0000010000', 'ensure_site_partition returns the existing site partition');
select is((select count(*)::int from partition_mgmt.partition_registry where program_id = '5a000001-0000-4000-8000-000000000001'),
  24, 'the repeated calls left the registry unchanged');

-- ---------------------------------------------------------------------------
-- Premake horizon
-- ---------------------------------------------------------------------------
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('5a000002-0000-4000-8000-000000000001', 'Long program',
        (date_trunc('month', now() at time zone 'UTC') - interval '2 months')::date, '2099-12-31',
        'c5000000-0000-4000-8000-000000000001');
insert into public.sites (site_id, program_id, name)
values ('5b000003-0000-4000-8000-000000000001', '5a000002-0000-4000-8000-000000000001', 'Long site');

select is(
  (select max(range_end) from partition_mgmt.partition_registry
   where table_key = 'petri' and site_id = '5b000003-0000-4000-8000-000000000001' and level = 'period'),
  (select (date_trunc('month', now() at time zone 'UTC') + make_interval(months => premake_months + 1)) at time zone 'UTC'
   from partition_mgmt.managed_tables where table_key = 'petri'),
  'a program running until 2099 gets months only up to the premake horizon');
select is(
  (select count(*)::int from partition_mgmt.partition_registry
   where table_key = 'petri' and site_id = '5b000003-0000-4000-8000-000000000001' and level = 'period' and not is_default),
  (select 2 + premake_months + 1 from partition_mgmt.managed_tables where table_key = 'petri'),
  'two past months, the current month and premake_months future months');
update partition_mgmt.managed_tables set premake_months = premake_months + 2 where table_key = 'petri';
select is(partition_mgmt.precreate_program_partitions('5a000002-0000-4000-8000-000000000001', 'petri'), 2,
  'raising premake_months lets the next precreate add exactly the new months');

-- ---------------------------------------------------------------------------
-- A row for a month without a leaf waits in the site DEFAULT, then moves into the new leaf
-- ---------------------------------------------------------------------------
insert into public.petri_observations_partitioned (observation_id, submission_id, site_id, program_id, petri_code, created_at)
values ('5e000001-0000-4000-8000-000000000001', '5d000001-0000-4000-8000-000000000001',
        '5b000001-0000-4000-8000-000000000001', '5a000001-0000-4000-8000-000000000001', 'late', '2024-05-10 08:00+00');
select is(
  (select tableoid::regclass::text from public.petri_observations_partitioned where observation_id = '5e000001-0000-4000-8000-000000000001'),
  'partitions.petri_p_5a0000010000_s_5b0000010000_default',
  'an observation for May 2024 (no leaf) lands in the site''s DEFAULT partition');
select lives_ok(
  $$select partition_mgmt.ensure_period_partition('petri', '5a000001-0000-4000-8000-000000000001',
      '5b000001-0000-4000-8000-000000000001', '2024-05-01 00:00+00')$$,
  'ensure_period_partition for that month succeeds although the DEFAULT holds a row of it');
select is(
  (select tableoid::regclass::text from public.petri_observations_partitioned where observation_id = '5e000001-0000-4000-8000-000000000001'),
  'partitions.petri_p_5a0000010000_s_5b0000010000_2024_05', 'the row moved into the new May leaf');
select is((select count(*)::int from partitions.petri_p_5a0000010000_s_5b0000010000_default), 0, 'the site DEFAULT is empty');
select is(
  (select (program_id, site_id, created_at)::text from partition_mgmt.observation_keys
   where table_key = 'petri' and observation_id = '5e000001-0000-4000-8000-000000000001'),
  '(5a000001-0000-4000-8000-000000000001,5b000001-0000-4000-8000-000000000001,"2024-05-10 08:00:00+00")',
  'the key table still routes the moved row');

-- ---------------------------------------------------------------------------
-- A row for a site not in the tree waits in the program DEFAULT
-- ---------------------------------------------------------------------------
insert into public.petri_observations_partitioned (observation_id, submission_id, site_id, program_id, petri_code, created_at)
values ('5e000002-0000-4000-8000-000000000001', '5d000001-0000-4000-8000-000000000001',
        '5b000004-0000-4000-8000-000000000001', '5a000001-0000-4000-8000-000000000001', 'early', '2024-02-10 08:00+00');
select is(
  (select tableoid::regclass::text from public.petri_observations_partitioned where observation_id = '5e000002-0000-4000-8000-000000000001'),
  'partitions.petri_p_5a0000010000_default', 'an observation for a site without partitions lands in the program''s DEFAULT');
select lives_ok(
  $$insert into public.sites (site_id, program_id, name)
    values ('5b000004-0000-4000-8000-000000000001', '5a000001-0000-4000-8000-000000000001', 'Site 4')$$,
  'inserting that site succeeds');
select is(
  (select tableoid::regclass::text from public.petri_observations_partitioned where observation_id = '5e000002-0000-4000-8000-000000000001'),
  'partitions.petri_p_5a0000010000_s_5b0000040000_2024_02', 'the row moved down into the site''s February leaf');
select is((select count(*)::int from partitions.petri_p_5a0000010000_default), 0, 'the program DEFAULT is empty');

-- ---------------------------------------------------------------------------
-- A row for a program not in the tree waits in the root DEFAULT. The program row exists
-- (company_id is derived from it) but its partitions were not made: the insert trigger is off,
-- as when it met a busy lock and left the work to maintenance.
-- ---------------------------------------------------------------------------
alter table public.pilot_programs disable trigger partition_mgmt_create_partitions;
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('5a000003-0000-4000-8000-000000000001', 'Program without partitions', '2024-02-01', '2024-02-29',
        'c5000000-0000-4000-8000-000000000001');
alter table public.pilot_programs enable trigger partition_mgmt_create_partitions;
alter table public.sites disable trigger partition_mgmt_create_partitions;
insert into public.sites (site_id, program_id, name)
values ('5b000005-0000-4000-8000-000000000001', '5a000003-0000-4000-8000-000000000001', 'Site 5');
alter table public.sites enable trigger partition_mgmt_create_partitions;
insert into public.petri_observations_partitioned (observation_id, submission_id, site_id, program_id, petri_code, created_at)
values ('5e000003-0000-4000-8000-000000000001', '5d000001-0000-4000-8000-000000000001',
        '5b000005-0000-4000-8000-000000000001', '5a000003-0000-4000-8000-000000000001', 'orphan', '2024-02-10 08:00+00');
select is(
  (select tableoid::regclass::text from public.petri_observations_partitioned where observation_id = '5e000003-0000-4000-8000-000000000001'),
  'partitions.petri_default', 'an observation for a program without partitions lands in the root DEFAULT');
select is(partition_mgmt.precreate_program_partitions('5a000003-0000-4000-8000-000000000001', 'petri'), 5,
  'creating the program''s partitions makes program, program DEFAULT, site, site DEFAULT and February');
select is(
  (select tableoid::regclass::text from public.petri_observations_partitioned where observation_id = '5e000003-0000-4000-8000-000000000001'),
  'partitions.petri_p_5a0000030000_s_5b0000050000_2024_02', 'the row moved from the root DEFAULT into its leaf');
select is((select count(*)::int from partitions.petri_default), 0, 'the root DEFAULT is empty');

-- ---------------------------------------------------------------------------
-- Granularity per site: week and none, set before the site's partitions exist
-- ---------------------------------------------------------------------------
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('5a000004-0000-4000-8000-000000000001', 'Granular program', '2026-01-12', '2026-01-25', 'c5000000-0000-4000-8000-000000000001');
select partition_mgmt.set_site_granularity('5b000006-0000-4000-8000-000000000001', 'week');
select partition_mgmt.set_site_granularity('5b000007-0000-4000-8000-000000000001', 'none', 'petri');
insert into public.sites (site_id, program_id, name)
values ('5b000006-0000-4000-8000-000000000001', '5a000004-0000-4000-8000-000000000001', 'Busy site'),
       ('5b000007-0000-4000-8000-000000000001', '5a000004-0000-4000-8000-000000000001', 'Tiny site');

select results_eq(
  $$select partition_name, granularity, range_start, range_end from partition_mgmt.partition_registry
    where table_key = 'petri' and site_id = '5b000006-0000-4000-8000-000000000001' and level = 'period' and not is_default
    order by range_start$$,
  $$values ('petri_p_5a0000040000_s_5b0000060000_2026w03'::text, 'week'::text, '2026-01-12 00:00+00'::timestamptz, '2026-01-19 00:00+00'::timestamptz),
           ('petri_p_5a0000040000_s_5b0000060000_2026w04', 'week', '2026-01-19 00:00+00', '2026-01-26 00:00+00')$$,
  'a weekly site gets one leaf per ISO week (Monday to Monday), named _IYYYwIW');
select is(
  (select granularity from partition_mgmt.partition_registry
   where table_key = 'gasifier' and site_id = '5b000006-0000-4000-8000-000000000001' and level = 'site' and not is_default),
  'week', 'set_site_granularity without a table applies to every managed table');
select results_eq(
  $$select level, is_default, is_leaf, granularity from partition_mgmt.partition_registry
    where table_key = 'petri' and site_id = '5b000007-0000-4000-8000-000000000001'$$,
  $$values ('site'::text, false, true, 'none'::text)$$,
  'a site with granularity none is a single leaf: no DEFAULT, no periods');
select is((select relkind::text from pg_class where oid = 'partitions.petri_p_5a0000040000_s_5b0000070000'::regclass), 'r',
  'the none site partition is an ordinary table');
select is(
  partition_mgmt.ensure_period_partition('petri', '5a000004-0000-4000-8000-000000000001', '5b000007-0000-4000-8000-000000000001', '2031-06-01'),
  'partitions.petri_p_5a0000040000_s_5b0000070000', 'ensure_period_partition for a none site returns the site partition, whatever the time');
select is(
  (select granularity from partition_mgmt.partition_registry
   where table_key = 'gasifier' and site_id = '5b000007-0000-4000-8000-000000000001' and level = 'site' and not is_default),
  'month', 'set_site_granularity with a table applies to that table only');

-- ---------------------------------------------------------------------------
-- Changing granularity later: only new partitions follow it, ranges never overlap
-- ---------------------------------------------------------------------------
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id)
values ('5a000005-0000-4000-8000-000000000001', 'Changing program', '2025-01-01', '2025-02-28', 'c5000000-0000-4000-8000-000000000001');
insert into public.sites (site_id, program_id, name)
values ('5b000008-0000-4000-8000-000000000001', '5a000005-0000-4000-8000-000000000001', 'Changing site');
select partition_mgmt.set_site_granularity('5b000008-0000-4000-8000-000000000001', 'week', 'petri');

select results_eq(
  $$select partition_name, granularity from partition_mgmt.partition_registry
    where table_key = 'petri' and site_id = '5b000008-0000-4000-8000-000000000001' and level = 'period' and not is_default
    order by range_start$$,
  $$values ('petri_p_5a0000050000_s_5b0000080000_2025_01'::text, 'month'::text), ('petri_p_5a0000050000_s_5b0000080000_2025_02', 'month')$$,
  'switching a site to weekly leaves its existing monthly leaves alone');
select is(
  partition_mgmt.ensure_period_partition('petri', '5a000005-0000-4000-8000-000000000001', '5b000008-0000-4000-8000-000000000001', '2025-03-05'),
  'partitions.petri_p_5a0000050000_s_5b0000080000_2025w10', 'a new period after the switch is a week');
select lives_ok(
  $$select partition_mgmt.ensure_period_partition('petri', '5a000005-0000-4000-8000-000000000001',
      '5b000008-0000-4000-8000-000000000001', '2025-03-01 12:00+00')$$,
  'a week that starts inside an existing month leaf can still be made');
select is(
  (select format('%s..%s', range_start::date, range_end::date) from partition_mgmt.partition_registry
   where table_key = 'petri' and site_id = '5b000008-0000-4000-8000-000000000001' and level = 'period' and not is_default
     and range_start <= '2025-03-01 12:00+00' and range_end > '2025-03-01 12:00+00'),
  '2025-03-01..2025-03-03', 'it is clipped to the part the February leaf does not cover');
select partition_mgmt.set_site_granularity('5b000008-0000-4000-8000-000000000001', 'month', 'petri');
select lives_ok(
  $$select partition_mgmt.ensure_period_partition('petri', '5a000005-0000-4000-8000-000000000001',
      '5b000008-0000-4000-8000-000000000001', '2025-03-20')$$,
  'switching back to monthly, the rest of March can be made');
select is(
  (select format('%s..%s %s', range_start::date, range_end::date, granularity) from partition_mgmt.partition_registry
   where table_key = 'petri' and site_id = '5b000008-0000-4000-8000-000000000001' and level = 'period' and not is_default
     and range_start <= '2025-03-20' and range_end > '2025-03-20'),
  '2025-03-10..2025-04-01 month', 'the monthly leaf starts where the weekly ones end');
select is(
  (select count(*)::int from partition_mgmt.partition_registry a
   join partition_mgmt.partition_registry b
     on a.table_key = b.table_key and a.site_id = b.site_id and a.partition_name < b.partition_name
    and a.level = 'period' and b.level = 'period' and not a.is_default and not b.is_default
    and tstzrange(a.range_start, a.range_end) && tstzrange(b.range_start, b.range_end)),
  0, 'no two leaves of any site overlap');
select is(
  (select count(*)::int from partition_mgmt.partition_registry r
   join pg_class c on c.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
   where r.level = 'period' and not r.is_default
     and pg_get_expr(c.relpartbound, c.oid) is distinct from format('FOR VALUES FROM (%L) TO (%L)', r.range_start, r.range_end)),
  0, 'every leaf''s bound in the catalog equals its registered range');
select is_empty(
  $$select * from partition_mgmt.validate_partitions() where check_name in ('registry matches catalog', 'partitions secured') and status <> 'ok'$$,
  'validate_partitions() finds the registry and the catalog in agreement and every partition secured');

select * from finish();
rollback;
