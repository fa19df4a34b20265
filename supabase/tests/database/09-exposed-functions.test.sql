-- Every function the bundle's schemas let anon or authenticated execute is a door: this file lists
-- them all and fails on any that is not in the reviewed allowlist below (each with why it is
-- there). A SECURITY DEFINER entry must filter by the caller's companies: its body uses
-- private.user_company_ids(). Covers also that route() tells a user the keys of their own
-- observations only.
begin;
select plan(5);

create temporary table exposed as
select (n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')')::text collate "default" as fn,
       p.prosecdef as security_definer, p.prosrc as body,
       has_function_privilege('anon', p.oid, 'execute') as anon,
       has_function_privilege('authenticated', p.oid, 'execute') as authenticated
from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'partition_mgmt', 'private', 'analytics', 'partitions', 'partitions_archive')
  and (has_function_privilege('anon', p.oid, 'execute') or has_function_privilege('authenticated', p.oid, 'execute'))
  and not exists (select from pg_catalog.pg_depend d where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');

-- the reviewed allowlist: function, who, why
create temporary table allowlist (fn text, who text, reason text);
insert into allowlist values
  ('public.get_observations_optimized(p_company_id uuid, p_program_id uuid, p_start_date timestamp with time zone, p_end_date timestamp with time zone, p_site_id uuid, p_submission_id uuid, p_limit integer, p_cursor text)',
   'authenticated', 'the read API (invoker: RLS; checks the company is the caller''s)'),
  ('public.get_gasifier_observations_optimized(p_company_id uuid, p_program_id uuid, p_start_date timestamp with time zone, p_end_date timestamp with time zone, p_site_id uuid, p_submission_id uuid, p_limit integer, p_cursor text)',
   'authenticated', 'the read API for gasifier (invoker: RLS)'),
  ('public.get_observation_by_id(p_table text, p_observation_id uuid)', 'authenticated', 'routed fetch (invoker: RLS)'),
  ('partition_mgmt.derive_program(p_table_key text, p_observation_id uuid, p_site_id uuid, p_event text, OUT program_id uuid, OUT own_partition boolean)',
   'authenticated', 'the site''s program for a row the app writes without one, called by the table''s triggers as the caller: definer, only sites of the caller''s companies'),
  ('public.update_observation_by_id(p_table text, p_observation_id uuid, p_changes jsonb)', 'authenticated', 'routed update (invoker: RLS)'),
  ('public.delete_observation_by_id(p_table text, p_observation_id uuid)', 'authenticated', 'routed delete (invoker: RLS)'),
  ('public.get_daily_metrics(p_program_id uuid, p_start_date date, p_end_date date, p_site_id uuid)', 'authenticated',
   'dashboard metrics: definer, filtered to private.user_company_ids() unless the caller''s role bypasses RLS'),
  ('private.user_company_ids()', 'authenticated', 'the RLS policies'' helper: the caller''s own companies'),
  ('partition_mgmt.route(p_table_key text, p_observation_id uuid, OUT program_id uuid, OUT site_id uuid, OUT created_at timestamp with time zone)',
   'authenticated', 'keys of an id for the routed RPCs: definer, only through the caller''s companies'' programs'),
  ('partition_mgmt.routed_function(p_table_key text, p_action text)', 'authenticated', 'the name of a table''s generated routed function (pure)'),
  ('partition_mgmt.assert_columns_exist(p_table regclass, p_changes jsonb)', 'authenticated', 'the routed update''s unknown-column error (invoker; reads pg_attribute)'),
  ('partition_mgmt.petri_fetch_by_id(p_observation_id uuid)', 'authenticated', 'behind get_observation_by_id (invoker: RLS; keys from route())'),
  ('partition_mgmt.petri_update_by_id(p_observation_id uuid, p_changes jsonb)', 'authenticated', 'behind update_observation_by_id (invoker: RLS; keys from route())'),
  ('partition_mgmt.petri_delete_by_id(p_observation_id uuid)', 'authenticated', 'behind delete_observation_by_id (invoker: RLS; keys from route())'),
  ('partition_mgmt.gasifier_fetch_by_id(p_observation_id uuid)', 'authenticated', 'behind get_observation_by_id for gasifier (invoker: RLS)'),
  ('partition_mgmt.gasifier_update_by_id(p_observation_id uuid, p_changes jsonb)', 'authenticated', 'behind update_observation_by_id for gasifier (invoker: RLS)'),
  ('partition_mgmt.gasifier_delete_by_id(p_observation_id uuid)', 'authenticated', 'behind delete_observation_by_id for gasifier (invoker: RLS)'),
  ('partition_mgmt.resolve_table_key(p_table text)', 'authenticated', 'table name to key, for the RPCs (invoker; managed_tables is readable)'),
  ('partition_mgmt.live_table(p_table_key text)', 'authenticated', 'the table the RPCs read (invoker)'),
  ('partition_mgmt.config(p_table_key text)', 'authenticated', 'column names for the RPCs (invoker; managed_tables is readable)'),
  ('partition_mgmt.build_observations_query(p_table_key text, p_company_id uuid, p_program_id uuid, p_start_date timestamp with time zone, p_end_date timestamp with time zone, p_site_id uuid, p_submission_id uuid, p_limit integer, p_cursor text)',
   'authenticated', 'the read API''s statement (invoker; checks the company)'),
  ('partition_mgmt.observations_filter(p_table_key text, p_company_id uuid, p_program_id uuid, p_start_date timestamp with time zone, p_end_date timestamp with time zone, p_site_id uuid, p_submission_id uuid)',
   'authenticated', 'the read API''s shared filter (invoker; checks the company and the program)'),
  ('partition_mgmt.build_aggregates_query(p_table_key text, p_company_id uuid, p_program_id uuid, p_group_by text, p_start_date timestamp with time zone, p_end_date timestamp with time zone, p_site_id uuid, p_submission_id uuid, p_limit integer)',
   'authenticated', 'the aggregates'' statement (invoker; checks the company)'),
  ('public.get_observation_aggregates(p_company_id uuid, p_program_id uuid, p_group_by text, p_start_date timestamp with time zone, p_end_date timestamp with time zone, p_site_id uuid, p_submission_id uuid, p_limit integer)',
   'authenticated', 'aggregates per day or site (invoker: RLS; checks the company)'),
  ('partition_mgmt.assert_company_access(p_company_id uuid)', 'authenticated', 'the read API''s company check (invoker)'),
  ('partition_mgmt.parse_cursor(p_cursor text, OUT cursor_ts timestamp with time zone, OUT cursor_id uuid)', 'authenticated', 'the read API''s cursor (pure)'),
  ('partition_mgmt.petri_rows_for_submission(p_program_id uuid, p_site_id uuid, p_submission_id uuid)', 'authenticated',
   'behind petri_observations_by_submission (invoker: RLS)'),
  ('partition_mgmt.gasifier_rows_for_submission(p_program_id uuid, p_site_id uuid, p_submission_id uuid)', 'authenticated',
   'behind gasifier_observations_by_submission (invoker: RLS)');

select is((select count(*)::int from exposed where anon), 0, 'anon can execute no function of the bundle');
select results_eq(
  $$select fn from exposed where authenticated order by fn$$,
  $$select fn from allowlist where who = 'authenticated' order by fn$$,
  'authenticated can execute exactly the reviewed allowlist (a new entry needs its reason here)');
select is((select string_agg(fn, '; ') from exposed
           where security_definer and authenticated and body not like '%user_company_ids%'
             and fn <> 'private.user_company_ids()'),   -- the filter itself: the companies of auth.uid()
  null, 'every SECURITY DEFINER function authenticated can execute filters by the caller''s companies');

-- route() through another company's observation: nothing
insert into public.companies (company_id, name) values
  ('c9000000-0000-4000-8000-000000000001', 'Mine'), ('c9000000-0000-4000-8000-000000000002', 'Theirs');
insert into auth.users (id, aud, role, email) values ('99000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'me@example.com');
insert into public.users (id, email, company_id) values ('99000000-0000-4000-8000-000000000001', 'me@example.com', 'c9000000-0000-4000-8000-000000000001');
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id) values
  ('9a000001-0000-4000-8000-000000000001', 'mine', current_date - 10, current_date + 10, 'c9000000-0000-4000-8000-000000000001'),
  ('9a000002-0000-4000-8000-000000000001', 'theirs', current_date - 10, current_date + 10, 'c9000000-0000-4000-8000-000000000002');
insert into public.sites (site_id, program_id, name) values
  ('9b000001-0000-4000-8000-000000000001', '9a000001-0000-4000-8000-000000000001', 'mine'),
  ('9b000002-0000-4000-8000-000000000001', '9a000002-0000-4000-8000-000000000001', 'theirs');
insert into public.submissions (submission_id, site_id, program_id) values
  ('9d000001-0000-4000-8000-000000000001', '9b000001-0000-4000-8000-000000000001', '9a000001-0000-4000-8000-000000000001'),
  ('9d000002-0000-4000-8000-000000000001', '9b000002-0000-4000-8000-000000000001', '9a000002-0000-4000-8000-000000000001');
insert into public.petri_observations_partitioned (observation_id, submission_id, site_id, program_id, petri_code) values
  ('9e000001-0000-4000-8000-000000000001', '9d000001-0000-4000-8000-000000000001', '9b000001-0000-4000-8000-000000000001', '9a000001-0000-4000-8000-000000000001', 'mine'),
  ('9e000002-0000-4000-8000-000000000001', '9d000002-0000-4000-8000-000000000001', '9b000002-0000-4000-8000-000000000001', '9a000002-0000-4000-8000-000000000001', 'theirs');
select set_config('request.jwt.claims', '{"sub": "99000000-0000-4000-8000-000000000001", "role": "authenticated"}', true);
set local role authenticated;
select results_eq(
  $$select r.site_id from partition_mgmt.route('petri', '9e000001-0000-4000-8000-000000000001') r
    union all select r.site_id from partition_mgmt.route('petri', '9e000002-0000-4000-8000-000000000001') r$$,
  $$values ('9b000001-0000-4000-8000-000000000001'::uuid), (null::uuid)$$,
  'a user gets the keys of their own observation, nothing for another company''s');
reset role;
set local role service_role;
select is((select r.site_id from partition_mgmt.route('petri', '9e000002-0000-4000-8000-000000000001') r),
  '9b000002-0000-4000-8000-000000000001'::uuid, 'the service role (bypasses RLS) routes every id');
reset role;

select * from finish();
rollback;
