-- Read API: get_observations_optimized, get_observation_aggregates, the submission view, and what
-- they prune to.
-- Covers: results and keyset pagination; errors for a foreign company, a foreign program, bad
-- limits, inverted dates and a forged cursor; EXPLAIN proves pruning per query class (program,
-- site, site + month, submission); company isolation through the RPC and the view; anon has no
-- access. The swap is simulated inside the transaction (the partitioned table takes the legacy
-- name and the read API is reinstalled against it), as partition_mgmt's swap does.
begin;
select plan(32);
-- the plan's literal tree (every program, site and period, created on insert); 08 covers the sized tree
update partition_mgmt.managed_tables set tree_shape = 'literal';
-- the whole file is one transaction: let its partition DDL use most of the lock table
set local partition_mgmt.ddl_lock_budget = '4000';

-- ---------------------------------------------------------------------------
-- Fixtures: companies A and B, a user each, one program with two sites each
-- ---------------------------------------------------------------------------
insert into public.companies (company_id, name) values
  ('a0000000-0000-4000-8000-000000000000', 'A'), ('b0000000-0000-4000-8000-000000000000', 'B');
insert into auth.users (id, email) values
  ('a1000000-0000-4000-8000-000000000000', 'a@example.com'), ('b1000000-0000-4000-8000-000000000000', 'b@example.com');
insert into public.users (id, email, company_id) values
  ('a1000000-0000-4000-8000-000000000000', 'a@example.com', 'a0000000-0000-4000-8000-000000000000'),
  ('b1000000-0000-4000-8000-000000000000', 'b@example.com', 'b0000000-0000-4000-8000-000000000000');
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id) values
  ('a2000000-0000-4000-8000-000000000000', 'PA', date_trunc('month', now())::date - interval '2 months', current_date + 60, 'a0000000-0000-4000-8000-000000000000'),
  ('b2000000-0000-4000-8000-000000000000', 'PB', date_trunc('month', now())::date - interval '2 months', current_date + 60, 'b0000000-0000-4000-8000-000000000000');
insert into public.sites (site_id, program_id, name) values
  ('a3000000-0000-4000-8000-000000000001', 'a2000000-0000-4000-8000-000000000000', 'A1'),
  ('a3000000-0000-4000-8000-000000000002', 'a2000000-0000-4000-8000-000000000000', 'A2'),
  ('b3000000-0000-4000-8000-000000000001', 'b2000000-0000-4000-8000-000000000000', 'B1');
insert into public.submissions (submission_id, site_id, program_id, company_id) values
  ('a4000000-0000-4000-8000-000000000001', 'a3000000-0000-4000-8000-000000000001', 'a2000000-0000-4000-8000-000000000000', 'a0000000-0000-4000-8000-000000000000'),
  ('a4000000-0000-4000-8000-000000000002', 'a3000000-0000-4000-8000-000000000002', 'a2000000-0000-4000-8000-000000000000', 'a0000000-0000-4000-8000-000000000000'),
  ('b4000000-0000-4000-8000-000000000001', 'b3000000-0000-4000-8000-000000000001', 'b2000000-0000-4000-8000-000000000000', 'b0000000-0000-4000-8000-000000000000');

-- simulated swap: the partitioned tree becomes public.petri_observations
alter table public.petri_observations rename to petri_observations_legacy_t;
alter table public.petri_observations_partitioned rename to petri_observations;
grant select, insert, update, delete on public.petri_observations to authenticated, service_role;   -- (the swap carries the grants)
select partition_mgmt.install_read_api('petri');

-- 30 rows for A (site A1, over the last 60 days), 5 for A2, 10 for B
insert into public.petri_observations (submission_id, site_id, program_id, petri_code, growth_index, created_at)
select 'a4000000-0000-4000-8000-000000000001', 'a3000000-0000-4000-8000-000000000001', 'a2000000-0000-4000-8000-000000000000',
       'A-' || g, g, now() - make_interval(days => g * 2)
from generate_series(1, 30) g;
insert into public.petri_observations (submission_id, site_id, program_id, petri_code, created_at)
select 'a4000000-0000-4000-8000-000000000002', 'a3000000-0000-4000-8000-000000000002', 'a2000000-0000-4000-8000-000000000000',
       'A2-' || g, now() - make_interval(hours => g)
from generate_series(1, 5) g;
insert into public.petri_observations (submission_id, site_id, program_id, petri_code, created_at)
select 'b4000000-0000-4000-8000-000000000001', 'b3000000-0000-4000-8000-000000000001', 'b2000000-0000-4000-8000-000000000000',
       'B-' || g, now() - make_interval(hours => g)
from generate_series(1, 10) g;

-- ---------------------------------------------------------------------------
-- Pruning, proven from EXPLAIN (as postgres: same statement the RPC runs)
-- ---------------------------------------------------------------------------
select is((select partitions_scanned from partition_mgmt.explain_partitions(
  partition_mgmt.build_observations_query('petri', 'a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000'))),
  (select count(*)::int from partition_mgmt.partition_registry
   where table_key = 'petri' and is_leaf and program_id = 'a2000000-0000-4000-8000-000000000000'),
  'program filter reads only the program''s leaves');
select is((select partitions_scanned from partition_mgmt.explain_partitions(
  partition_mgmt.build_observations_query('petri', 'a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
    p_site_id => 'a3000000-0000-4000-8000-000000000001'))),
  (select count(*)::int from partition_mgmt.partition_registry
   where table_key = 'petri' and is_leaf and site_id = 'a3000000-0000-4000-8000-000000000001'),
  'site filter reads only the site''s leaves');
select is((select partitions_scanned from partition_mgmt.explain_partitions(
  partition_mgmt.build_observations_query('petri', 'a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
    date_trunc('month', now()), date_trunc('month', now()) + interval '1 month', 'a3000000-0000-4000-8000-000000000001'))),
  1, 'site + one month reads exactly one leaf');
select is((select partitions_scanned from partition_mgmt.explain_partitions(
  partition_mgmt.build_observations_query('petri', 'a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
    p_submission_id => 'a4000000-0000-4000-8000-000000000001'))),
  (select count(*)::int from partition_mgmt.partition_registry
   where table_key = 'petri' and is_leaf and site_id = 'a3000000-0000-4000-8000-000000000001'),
  'a submission prunes to its site');
select is((select partitions_scanned from partition_mgmt.explain_partitions(
  partition_mgmt.build_aggregates_query('petri', 'a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'day',
    p_site_id => 'a3000000-0000-4000-8000-000000000001'))),
  (select count(*)::int from partition_mgmt.partition_registry
   where table_key = 'petri' and is_leaf and site_id = 'a3000000-0000-4000-8000-000000000001'),
  'aggregates of a site read only the site''s leaves');
select cmp_ok((select partitions_scanned from partition_mgmt.explain_partitions('select * from public.petri_observations where petri_code = ''x''')),
  '>', (select partitions_scanned from partition_mgmt.explain_partitions(
    partition_mgmt.build_observations_query('petri', 'a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000'))),
  'an unkeyed query reads more partitions than a program query (the comparison is meaningful)');

-- ---------------------------------------------------------------------------
-- As user A
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"a1000000-0000-4000-8000-000000000000","role":"authenticated"}', true);
set local role authenticated;

select is((select count(*)::int from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000',
  'a2000000-0000-4000-8000-000000000000', p_limit => 1000)), 35, 'A reads all 35 rows of its program');
select is((select count(*)::int from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000',
  'a2000000-0000-4000-8000-000000000000', p_site_id => 'a3000000-0000-4000-8000-000000000002')), 5, 'site filter');
select is((select count(*)::int from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000',
  'a2000000-0000-4000-8000-000000000000', now() - interval '10 days', now(), 'a3000000-0000-4000-8000-000000000001')),
  (select count(*)::int from generate_series(1, 30) g where g * 2 <= 10), 'date range filter');

-- keyset pagination: pages of 7 cover all 35 rows exactly once
create temporary table pages (page int, observation_id uuid, created_at timestamptz) on commit drop;
do $$
declare
  v_cursor text;
  v_page int := 0;
  v_last record;
begin
  loop
    v_page := v_page + 1;
    insert into pages select v_page, o.observation_id, o.created_at from public.get_observations_optimized(
      'a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', p_limit => 7, p_cursor => v_cursor) o;
    select p.observation_id, p.created_at into v_last from pages p where p.page = v_page order by p.created_at, p.observation_id limit 1;
    exit when v_last is null or v_page > 20;
    v_cursor := v_last.created_at::text || '|' || v_last.observation_id::text;
  end loop;
end
$$;
select is((select count(*)::int from pages), 35, 'pagination returns every row');
select is((select count(distinct observation_id)::int from pages), 35, 'pagination returns no row twice');

select throws_ok($$select * from public.get_observations_optimized('b0000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000')$$,
  '42501', 'company b0000000-0000-4000-8000-000000000000 is not one of your companies', 'B''s company is refused');
select throws_like($$select * from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000')$$,
  'program b2000000-0000-4000-8000-000000000000 does not belong to company %', 'B''s program under A''s company is refused');
select throws_ok($$select * from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', p_limit => 0)$$,
  '22023', 'p_limit must be between 1 and 1000, got 0', 'limit 0 is refused');
select throws_ok($$select * from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', p_limit => 100000)$$,
  '22023', 'p_limit must be between 1 and 1000, got 100000', 'a huge limit is refused');
select throws_like($$select * from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', '2026-02-01', '2026-01-01')$$,
  'p_end_date % is before p_start_date %', 'inverted dates are refused');
select throws_like($$select * from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', p_cursor => 'x''; drop table users; --')$$,
  'invalid cursor %', 'a forged cursor is refused');
select is((select count(*)::int from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000',
  'a2000000-0000-4000-8000-000000000000', p_submission_id => 'b4000000-0000-4000-8000-000000000001')), 0,
  'B''s submission under A''s program yields nothing');

-- aggregates
select results_eq($$select site_id, observation_count, growth_index_count, avg_growth_index, min_growth_index, max_growth_index
                    from public.get_observation_aggregates('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'site')$$,
  $$values ('a3000000-0000-4000-8000-000000000001'::uuid, 30::bigint, 30::bigint, 15.5::float8, 1::float8, 30::float8),
           ('a3000000-0000-4000-8000-000000000002'::uuid, 5::bigint, 0::bigint, null::float8, null::float8, null::float8)$$,
  'aggregates per site: counts and growth_index statistics of each of A''s sites');
select is((select sum(observation_count)::int || ' rows in ' || count(*) || ' days, ' || count(*) filter (where site_id is null) || ' without a site'
           from public.get_observation_aggregates('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000')),
  '35 rows in ' || (select count(distinct (created_at at time zone 'UTC')::date) from public.petri_observations
                    where program_id = 'a2000000-0000-4000-8000-000000000000') || ' days, '
  || (select count(distinct (created_at at time zone 'UTC')::date) from public.petri_observations
      where program_id = 'a2000000-0000-4000-8000-000000000000') || ' without a site',
  'aggregates per UTC day (the default) cover all 35 rows, one row per day');
select is((select observation_count::int from public.get_observation_aggregates('a0000000-0000-4000-8000-000000000000',
  'a2000000-0000-4000-8000-000000000000', 'site', now() - interval '10 days', now(), 'a3000000-0000-4000-8000-000000000001')),
  (select count(*)::int from generate_series(1, 30) g where g * 2 <= 10), 'aggregates take the period and the site');
select throws_ok($$select * from public.get_observation_aggregates('b0000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000')$$,
  '42501', 'company b0000000-0000-4000-8000-000000000000 is not one of your companies', 'aggregates of B''s company are refused');
select throws_ok($$select * from public.get_observation_aggregates('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'week')$$,
  '22023', 'p_group_by must be day or site, got ''week''', 'an unknown grouping is refused, naming it');
select is((select count(*)::int from public.get_observation_aggregates('a0000000-0000-4000-8000-000000000000',
  'a2000000-0000-4000-8000-000000000000', 'day', p_limit => 3)), 3, 'p_limit caps the groups');

-- submission view
select is((select count(*)::int from public.petri_observations_by_submission where submission_id = 'a4000000-0000-4000-8000-000000000001'),
  30, 'the submission view returns the submission''s rows');
select is((select count(*)::int from public.petri_observations_by_submission where submission_id = 'b4000000-0000-4000-8000-000000000001'),
  0, 'the submission view shows nothing of B');
select is((select count(*)::int from public.petri_observations where program_id = 'b2000000-0000-4000-8000-000000000000'),
  0, 'the parent shows nothing of B');
reset role;

-- ---------------------------------------------------------------------------
-- As anon
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"role":"anon"}', true);
set local role anon;
select throws_ok($$select * from public.get_observations_optimized('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000')$$,
  '42501', null, 'anon cannot call get_observations_optimized');
select throws_ok($$select * from public.petri_observations_by_submission$$, '42501', null, 'anon cannot read the submission view');
select throws_ok($$select * from public.get_observation_aggregates('a0000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000')$$,
  '42501', null, 'anon cannot call get_observation_aggregates');
reset role;

-- service_role reads any company
set local role service_role;
select is((select count(*)::int from public.get_observations_optimized('b0000000-0000-4000-8000-000000000000',
  'b2000000-0000-4000-8000-000000000000')), 10, 'service_role reads B''s program');
reset role;
select is((select prosecdef from pg_proc where oid = 'public.get_observations_optimized(uuid,uuid,timestamptz,timestamptz,uuid,uuid,integer,text)'::regprocedure),
  false, 'get_observations_optimized is SECURITY INVOKER (RLS applies)');

select * from finish();
rollback;
