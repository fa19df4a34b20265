-- The tree sized by its data (managed_tables.tree_shape = 'sized', the default; migrations
-- 20250102000200_partition_tree and 20250102000500_promotion).
-- Covers: periods of every length and their names; the period a rate asks for (the shortest that
-- holds the target; 'none' when not even a year does; never 'none' once split by time); inserting
-- a program and a site creates nothing; plan_tree on legacy data: a program at the target gets a
-- partition, a smaller one shares the root's leaf, a site at the target gets periods at its rate, a
-- pinned site gets partitions whatever its rows; prepare_migration creates exactly the plan, and the
-- DEFAULT leaves get their own site (and program) indexes; lock_budget() counts what one keyless
-- statement locks; the pre-check refuses the literal tree of the same data when the minimum of
-- keyless statements is not met; a promotion (start, copy, cutover) gives a grown site partitions of
-- its own and keeps every row, unless it would take the tree past its lock budget (then nothing is
-- built, and the promote step holds it); v_site_state and v_tree_summary say so; a second promotion out of
-- the DEFAULT leaf the first one left works too.
begin;
select plan(39);
set local timezone = 'UTC';

-- ---------------------------------------------------------------------------
-- Periods
-- ---------------------------------------------------------------------------
select results_eq(
  $$select g, (partition_mgmt.period_bounds(g, '2025-05-14 10:00+00')).*, partition_mgmt.period_suffix(g, (partition_mgmt.period_bounds(g, '2025-05-14 10:00+00')).range_start)
    from unnest(array['week', 'month', 'quarter', 'year']) g$$,
  $$values ('week', '2025-05-12 00:00+00'::timestamptz, '2025-05-19 00:00+00'::timestamptz, '2025w20'),
           ('month', '2025-05-01 00:00+00', '2025-06-01 00:00+00', '2025_05'),
           ('quarter', '2025-04-01 00:00+00', '2025-07-01 00:00+00', '2025q2'),
           ('year', '2025-01-01 00:00+00', '2026-01-01 00:00+00', '2025')$$,
  'weeks, months, quarters and years in UTC, named _IYYYwIW, _YYYY_MM, _YYYYqQ, _YYYY');
select results_eq(
  $$select partition_mgmt.granularity_for_rate(r, interval '30 days', 1000), partition_mgmt.granularity_for_rate(r, interval '30 days', 1000, true)
    from unnest(array[5000, 1000, 400, 100, 10]::numeric[]) r$$,
  $$values ('week', 'week'), ('month', 'month'), ('quarter', 'quarter'), ('year', 'year'), ('none', 'year')$$,
  'the shortest period holding the target at the rate; none only for a site not split by time yet');
select throws_like($$select partition_mgmt.period_bounds('none', now())$$, '%has no periods%', 'none has no periods');

-- ---------------------------------------------------------------------------
-- Inserts create nothing
-- ---------------------------------------------------------------------------
select is((select tree_shape from partition_mgmt.managed_tables where table_key = 'petri'), 'sized', 'the default tree is sized');
create temporary table registry_before as select count(*) as n from partition_mgmt.partition_registry;
insert into public.companies (company_id, name) values ('c8000000-0000-4000-8000-000000000001', 'Sized Co');
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id) values
  ('8a000001-0000-4000-8000-000000000001', 'Big program', current_date - 400, current_date + 60, 'c8000000-0000-4000-8000-000000000001'),
  ('8a000002-0000-4000-8000-000000000001', 'Small program', current_date - 400, current_date + 60, 'c8000000-0000-4000-8000-000000000001');
insert into public.sites (site_id, program_id, name) values
  ('8b000001-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001', 'busy site'),
  ('8b000002-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001', 'quiet site'),
  ('8b000003-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001', 'pinned site'),
  ('8b000004-0000-4000-8000-000000000001', '8a000002-0000-4000-8000-000000000001', 'small program site');
insert into public.submissions (submission_id, site_id, program_id) values
  ('8d000001-0000-4000-8000-000000000001', '8b000001-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001');
select is((select count(*) from partition_mgmt.partition_registry), (select n from registry_before), 'inserting programs and sites creates no partition');

-- legacy data: busy site 1,200 rows over the last 12 months (100 a month), quiet site 300,
-- pinned site 5, the small program 50
update partition_mgmt.managed_tables set target_rows_per_leaf = 1000 where table_key = 'petri';
select partition_mgmt.set_site_granularity('8b000003-0000-4000-8000-000000000001', 'none', 'petri');
insert into public.petri_observations (submission_id, site_id, program_id, petri_code, created_at)
select '8d000001-0000-4000-8000-000000000001', s, p, 'L' || g, now() - make_interval(hours => g * (365 * 24 / n))
from (values ('8b000001-0000-4000-8000-000000000001'::uuid, '8a000001-0000-4000-8000-000000000001'::uuid, 1200),
             ('8b000002-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001', 300),
             ('8b000003-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001', 5),
             ('8b000004-0000-4000-8000-000000000001', '8a000002-0000-4000-8000-000000000001', 50)) d(s, p, n),
     generate_series(1, n) g;

-- ---------------------------------------------------------------------------
-- The plan and prepare
-- ---------------------------------------------------------------------------
create temporary table plan as select * from partition_mgmt.plan_tree('petri', 'public.petri_observations'::regclass);
select results_eq(
  $$select level, program_id, site_id, granularity from plan where level <> 'period' order by level, site_id nulls first$$,
  $$values ('program', '8a000001-0000-4000-8000-000000000001'::uuid, null::uuid, null::text),
           ('site', '8a000001-0000-4000-8000-000000000001', '8b000001-0000-4000-8000-000000000001', 'year'),
           ('site', '8a000001-0000-4000-8000-000000000001', '8b000003-0000-4000-8000-000000000001', 'none')$$,
  'the big program gets a partition, its busy site yearly periods (100 rows a month), the pinned site one leaf; the rest share');
select ok((select count(*) >= 2 from plan where level = 'period' and site_id = '8b000001-0000-4000-8000-000000000001'),
  'the busy site''s years of data (and the premake horizon) are planned');
select ok((select bool_and(granularity = 'year' and range_start = date_trunc('year', range_start)) from plan where level = 'period'),
  'every planned period is a whole year');

select lives_ok($$select partition_mgmt.prepare_migration('petri')$$, 'prepare');
select is(partition_mgmt.migration_phase('petri'), 'prepared', 'prepared in one call');
select results_eq(
  $$select level, is_default, is_leaf, program_id, site_id from partition_mgmt.partition_registry
    where table_key = 'petri' and level in ('program', 'site') order by level, is_default, site_id nulls first, program_id nulls first$$,
  $$values ('program', false, false, '8a000001-0000-4000-8000-000000000001'::uuid, null::uuid),
           ('program', true, true, null, null),
           ('site', false, false, '8a000001-0000-4000-8000-000000000001', '8b000001-0000-4000-8000-000000000001'),
           ('site', false, true, '8a000001-0000-4000-8000-000000000001', '8b000003-0000-4000-8000-000000000001'),
           ('site', true, true, '8a000001-0000-4000-8000-000000000001', null)$$,
  'exactly the planned program and sites, with the root''s and the program''s DEFAULT leaves');
select is(
  (select count(*)::int from partition_mgmt.partition_registry where table_key = 'petri' and level = 'period' and not is_default),
  (select count(*)::int from plan where level = 'period'), 'exactly the planned periods');
select ok(exists (select from pg_indexes where schemaname = 'partitions' and tablename = 'petri_default' and indexdef like '%(program_id, created_at DESC, observation_id DESC)%')
          and exists (select from pg_indexes where schemaname = 'partitions' and tablename = 'petri_default' and indexdef like '%(site_id, created_at DESC, observation_id DESC)%'),
  'the root''s DEFAULT leaf has program and site indexes of its own');
select ok(exists (select from pg_indexes where schemaname = 'partitions' and tablename = 'petri_p_8a0000010000_default' and indexdef like '%(site_id, created_at DESC, observation_id DESC)%'),
  'the program''s DEFAULT leaf has a site index of its own');
select is((select indexes::int from (select count(*) as indexes from pg_index where indrelid = 'partitions.petri_p_8a0000010000_s_8b0000030000'::regclass) x), 3,
  'a leaf has three indexes: the primary key, time order, submission (the company index is not carried)');

-- ---------------------------------------------------------------------------
-- The lock budget
-- ---------------------------------------------------------------------------
select is((select keyless_locks from partition_mgmt.lock_budget() where table_key = 'petri'),
  partition_mgmt.keyless_statement_locks('public.petri_observations_partitioned'), 'lock_budget counts the tree''s keyless locks');
select is((select keyless_locks from partition_mgmt.lock_budget() where table_key = 'petri'),
  (select (count(*) + sum((select count(*) from pg_index i where i.indrelid = t.relid))
                      filter (where t.isleaf or current_setting('server_version_num')::int >= 160000))::bigint
   from pg_partition_tree('public.petri_observations_partitioned') t),
  'every relation of the tree and every index of every leaf (from PostgreSQL 16 on, of every partitioned table too)');
select is((select keyless_at_once from partition_mgmt.lock_budget() where table_key = 'petri'),
  (partition_mgmt.lock_capacity() / (select keyless_locks from partition_mgmt.lock_budget() where table_key = 'petri'))::bigint,
  'how many fit: the lock table''s slots over one statement''s locks');
select is((select status from partition_mgmt.lock_budget() where table_key = 'petri'), 'ok', 'this tree fits');
update partition_mgmt.managed_tables set min_keyless_statements = 100000 where table_key = 'petri';
select is((select status from partition_mgmt.lock_budget() where table_key = 'petri'), 'over budget', 'a minimum the tree cannot meet is over budget');
select matches((select detail from partition_mgmt.health() where finding = 'lock budget exceeded' and table_key = 'petri'),
  '^\d+ statements without the partition keys fit .*minimum 100000.*max_locks_per_transaction', 'health() warns, with the way out');
select is((select status from partition_mgmt.pre_migration_check('gasifier') where check_name = 'lock budget'), 'ok',
  'the pre-check of the other table is unaffected');
update partition_mgmt.managed_tables set min_keyless_statements = 100000 where table_key = 'gasifier';
select is((select status from partition_mgmt.pre_migration_check('gasifier') where check_name = 'lock budget'), 'blocker',
  'the pre-check blocks a tree on which fewer keyless statements than the minimum fit');
update partition_mgmt.managed_tables set min_keyless_statements = 20;

-- ---------------------------------------------------------------------------
-- Promotion of a site that grew past the target (one transaction here; maintenance commits
-- between the steps)
-- ---------------------------------------------------------------------------
select partition_mgmt.start_sync('petri');
select is((select done from partition_mgmt.migrate_to_partitioned(10000, null, 'petri', 10)), true, 'the copy is filled');
-- the quiet site grows to 1,300 rows in the program's shared leaf
insert into public.petri_observations (submission_id, site_id, program_id, petri_code, created_at)
select '8d000001-0000-4000-8000-000000000001', '8b000002-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001', 'G' || g, now() - make_interval(hours => g)
from generate_series(1, 1000) g;
delete from partition_mgmt.migration_state where table_key = 'petri';   -- (promotion leaves a table being migrated alone)
analyze partitions.petri_p_8a0000010000_default;
select results_eq($$select level, site_id from partition_mgmt.promotion_candidates('petri')$$,
  $$values ('site'::text, '8b000002-0000-4000-8000-000000000001'::uuid)$$, 'the grown site is a candidate');

-- the lock budget: a promotion that would take the tree past it is refused and nothing is built;
-- with no room for even one more leaf the promote step counts nothing
create temporary table before_held as
select (select count(*) from partition_mgmt.partition_registry) as reg,
       (select count(*) from pg_catalog.pg_class where relnamespace = 'partitions'::regnamespace) as rels;
update partition_mgmt.managed_tables set min_keyless_statements = 100000 where table_key = 'petri';
select throws_like($$select partition_mgmt.start_promotion('petri', 'site', '8a000001-0000-4000-8000-000000000001', '8b000002-0000-4000-8000-000000000001')$$,
  'promoting site 8b000002-0000-4000-8000-000000000001 of "petri" would take the tree over its lock budget: % fewer than the minimum of 100000',
  'start_promotion refuses a promotion past the lock budget, with the figures');
select results_eq($$select action, detail ~ '^promotions of "petri" are held: the tree is at its lock budget' from partition_mgmt.promote_step('petri')$$,
  $$values ('held'::text, true)$$, 'with no room for one more leaf the promote step holds, and says why');
-- room for one more leaf, not for the grown site's periods: the step tries, and holds
update partition_mgmt.managed_tables m set min_keyless_statements = partition_mgmt.lock_capacity()
  / (partition_mgmt.keyless_statement_locks(m.parent) + 1 + (select count(*) from pg_catalog.pg_index i where i.indrelid = m.parent))
where m.table_key = 'petri';
select results_eq($$select action, detail ~ 'would take the tree over its lock budget.*raise target_rows_per_leaf' from partition_mgmt.promote_step('petri')$$,
  $$values ('held'::text, true)$$, 'room for one more leaf but not for the site''s periods: held by start_promotion''s check, with the way out');
create temporary table scans_before as select pg_stat_get_xact_numscans('partitions.petri_p_8a0000010000_default'::regclass) as n;
select results_eq(
  $$select action, detail ~ 'would take the tree over its lock budget.*held since .*counted again when the tree, the lock table or the minimum changes'
    from partition_mgmt.promote_step('petri')$$,
  $$values ('held'::text, true)$$, 'at the same budget the next step holds again');
select is(pg_stat_get_xact_numscans('partitions.petri_p_8a0000010000_default'::regclass) - (select n from scans_before), 0::bigint,
  '... without reading the shared leaf');
select results_eq(
  $$select (select count(*) from partition_mgmt.partition_registry), (select count(*) from pg_catalog.pg_class where relnamespace = 'partitions'::regnamespace),
           (select count(*) from partition_mgmt.promotions)$$,
  $$select reg, rels, 0::bigint from before_held$$, 'a held promotion built and registered nothing');
update partition_mgmt.managed_tables set min_keyless_statements = 20 where table_key = 'petri';
select lives_ok($$select partition_mgmt.start_promotion('petri', 'site', '8a000001-0000-4000-8000-000000000001', '8b000002-0000-4000-8000-000000000001')$$,
  'promotion starts');
select lives_ok($$select partition_mgmt.promotion_copy_batch('petri', 100000); select partition_mgmt.promotion_copy_batch('petri', 100000);
                  select partition_mgmt.promotion_cutover('petri')$$, 'copy and cutover');
select results_eq(
  $$select count(*)::int, count(*) filter (where tableoid::regclass::text like 'partitions.petri_p_8a0000010000_s_8b0000020000%')::int
    from public.petri_observations_partitioned where site_id = '8b000002-0000-4000-8000-000000000001'$$,
  $$values (1300, 1300)$$, 'every row of the site is in its own partitions now');
select is((select count(*)::int from public.petri_observations_partitioned), (select count(*)::int from public.petri_observations),
  'no row lost or doubled by the promotion');
select results_eq($$select state from partition_mgmt.v_site_state where table_key = 'petri' and program_id = '8a000001-0000-4000-8000-000000000001' order by site_id$$,
  $$values ('own partitions'::text), ('own partitions'), ('own partitions')$$, 'v_site_state: the three sites of the big program have partitions of their own');

-- a second promotion out of the same DEFAULT leaf, which is now the rest of the first (with its
-- constraints, under the names a promotion gives them)
insert into public.sites (site_id, program_id, name) values ('8b000005-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001', 'late site');
insert into public.petri_observations_partitioned (submission_id, site_id, program_id, petri_code, created_at)
select '8d000001-0000-4000-8000-000000000001', '8b000005-0000-4000-8000-000000000001', '8a000001-0000-4000-8000-000000000001', 'late ' || g, now() - make_interval(hours => g)
from generate_series(1, 20) g;
select lives_ok($$select partition_mgmt.start_promotion('petri', 'site', '8a000001-0000-4000-8000-000000000001', '8b000005-0000-4000-8000-000000000001')$$,
  'a second promotion out of the same DEFAULT leaf starts');
select lives_ok($$select partition_mgmt.promotion_copy_batch('petri', 100000); select partition_mgmt.promotion_copy_batch('petri', 100000);
                  select partition_mgmt.promotion_cutover('petri')$$, 'and cuts over');
select results_eq(
  $$select count(*)::int, count(*) filter (where tableoid::regclass::text like 'partitions.petri_p_8a0000010000_s_8b0000050000%')::int
    from public.petri_observations_partitioned where site_id = '8b000005-0000-4000-8000-000000000001'$$,
  $$values (20, 20)$$, 'every row of the second site is in its own partitions');

select * from finish();
rollback;
