-- Company context and RLS (migrations 20250102000000_company_context, 20250102000350_setup_steps)
-- on the demo app (a customer's project with RLS policies of its own).
-- Covers:
--   * schema private not reachable by anon; private.user_company_ids(), the trigger function and
--     the lock helper have search_path ''; EXECUTE on the policies' helper for authenticated only
--   * the bundle touches only the observation tables: company_id, its trigger, its index; no column,
--     trigger or policy of the bundle on companies, users, programs, sites, submissions
--   * the plan's company_isolation_petri / _gasifier are RESTRICTIVE, next to the app's own policies
--   * the trigger fills company_id on insert (gasifier with NULL program_id: through the site),
--     follows a program change, overrides a directly written company_id, rejects an unknown program
--     with a message naming it, and works unchanged on any table with program_id/site_id/company_id
--   * the setup step fills company_id of rows written without it (as before the push) and corrects
--     a stale one, in batches, and a second pass changes nothing
--   * user_company_ids(): the user's company; empty without a user or for a deactivated user
--   * what a member, an admin and another company's user may do is the app's policies ANDed with
--     company isolation: a permissive policy the app adds later cannot open another company's rows
--   * lock_for_ddl refuses a bad lock mode and names the session that holds a table
--
-- Ids (first characters say what they are):
--   companies  ca.. (A)  cb.. (B)
--   users      aa..01 (A)  aa..02 (A, admin)  aa..03 (A, deactivated)  bb..01 (B)
--   programs   a1.. / b1..    sites a2.. / b2..    submissions a3.. / b3..
--   petri      a4..01 (by aa..01), a4..02 / b4..01    gasifier a5..01, a5..02 (program_id NULL) / b5..01
begin;
select plan(47);

-- ---------------------------------------------------------------------------
-- Schema, helpers, privileges
-- ---------------------------------------------------------------------------
select has_schema('private', 'schema private exists');
select ok(not has_schema_privilege('anon', 'private', 'usage'), 'anon has no usage on schema private');
select ok((select prosecdef and 'search_path=""' = any (proconfig) from pg_proc where oid = 'private.user_company_ids()'::regprocedure),
  'user_company_ids() is SECURITY DEFINER with search_path empty');
select ok((select prosecdef and 'search_path=""' = any (proconfig) from pg_proc
           where oid = 'private.set_company_id_from_program()'::regprocedure),
  'set_company_id_from_program() is SECURITY DEFINER with search_path empty');
select ok(has_function_privilege('authenticated', 'private.user_company_ids()', 'execute')
          and not has_function_privilege('anon', 'private.user_company_ids()', 'execute'),
  'user_company_ids() is executable by authenticated, not by anon');
select ok(not has_function_privilege('authenticated', 'private.lock_for_ddl(text[], text)', 'execute')
          and not has_function_privilege('anon', 'private.lock_for_ddl(text[], text)', 'execute'),
  'lock_for_ddl() is not an API endpoint');

-- ---------------------------------------------------------------------------
-- What the bundle put on the app's tables: only the observation tables
-- ---------------------------------------------------------------------------
select is((select array_agg(format('%s.%s', attrelid::regclass, attname) order by attrelid::regclass::text) from pg_attribute
           where attname = 'company_id' and not attisdropped
             and attrelid in ('public.sites'::regclass, 'public.petri_observations'::regclass, 'public.gasifier_observations'::regclass)),
  array['gasifier_observations.company_id', 'petri_observations.company_id'],
  'company_id is added to the observation tables, not to sites');
select is((select array_agg(tgrelid::regclass::text order by tgrelid::regclass::text) from pg_trigger
           where tgname = 'set_company_id_from_program'
             and tgrelid in ('public.companies'::regclass, 'public.users'::regclass, 'public.pilot_programs'::regclass, 'public.sites'::regclass,
                             'public.submissions'::regclass, 'public.petri_observations'::regclass, 'public.gasifier_observations'::regclass)),
  array['gasifier_observations', 'petri_observations'],
  'of the app''s tables, the company_id trigger is on the observation tables only');
select is((select count(*)::int from pg_policy
           where polrelid in ('public.companies'::regclass, 'public.users'::regclass, 'public.pilot_programs'::regclass,
                              'public.sites'::regclass, 'public.submissions'::regclass)
             and polname like 'company\_isolation%'),
  0, 'no policy of the bundle on companies, users, programs, sites, submissions');
select is((select array_agg(format('%s %s', polname, case when polpermissive then 'permissive' else 'restrictive' end) order by polname)
           from pg_policy where polname like 'company\_isolation%'),
  array['company_isolation_gasifier restrictive', 'company_isolation_petri restrictive'],
  'the plan''s policies are RESTRICTIVE on the observation tables (the app has RLS on)');
select is((select count(*)::int from pg_policy where polrelid = 'public.petri_observations'::regclass and polpermissive), 4,
  'the app''s own four petri policies are still there');
select is_indexed('public', 'petri_observations', 'company_id', 'petri_observations.company_id is indexed (setup step)');
select is_indexed('public', 'gasifier_observations', 'company_id', 'gasifier_observations.company_id is indexed (setup step)');
select is((select count(*)::int from partition_mgmt.setup_tasks() where not done), 0, 'no setup step is pending');

-- ---------------------------------------------------------------------------
-- Test data, inserted as postgres without company_id: the trigger fills it
-- ---------------------------------------------------------------------------
insert into public.companies (company_id, name) values
  ('ca000000-0000-4000-8000-000000000000', 'Company A'),
  ('cb000000-0000-4000-8000-000000000000', 'Company B');
insert into auth.users (id, aud, role, email) values
  ('aa000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'a1@a.test'),
  ('aa000000-0000-4000-8000-000000000002', 'authenticated', 'authenticated', 'a2@a.test'),
  ('aa000000-0000-4000-8000-000000000003', 'authenticated', 'authenticated', 'a3@a.test'),
  ('bb000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'b1@b.test');
insert into public.users (id, email, full_name, company_id, is_active, is_company_admin) values
  ('aa000000-0000-4000-8000-000000000001', 'a1@a.test', 'Ann A', 'ca000000-0000-4000-8000-000000000000', true, false),
  ('aa000000-0000-4000-8000-000000000002', 'a2@a.test', 'Abe A', 'ca000000-0000-4000-8000-000000000000', true, true),
  ('aa000000-0000-4000-8000-000000000003', 'a3@a.test', 'Old A', 'ca000000-0000-4000-8000-000000000000', false, false),
  ('bb000000-0000-4000-8000-000000000001', 'b1@b.test', 'Bea B', 'cb000000-0000-4000-8000-000000000000', true, true);
insert into public.pilot_programs (program_id, name, start_date, end_date, company_id) values
  ('a1000000-0000-4000-8000-000000000000', 'Program A', '2025-01-01', '2025-12-31', 'ca000000-0000-4000-8000-000000000000'),
  ('b1000000-0000-4000-8000-000000000000', 'Program B', '2025-01-01', '2025-12-31', 'cb000000-0000-4000-8000-000000000000');
insert into public.sites (site_id, program_id, name) values
  ('a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'Site A'),
  ('b2000000-0000-4000-8000-000000000000', 'b1000000-0000-4000-8000-000000000000', 'Site B');
insert into public.submissions (submission_id, site_id, program_id, company_id) values
  ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'ca000000-0000-4000-8000-000000000000'),
  ('b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000', 'b1000000-0000-4000-8000-000000000000', 'cb000000-0000-4000-8000-000000000000');
insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, created_by) values
  ('a4000000-0000-4000-8000-000000000001', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'PA1', 'aa000000-0000-4000-8000-000000000001'),
  ('a4000000-0000-4000-8000-000000000002', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'PA2', null),
  ('b4000000-0000-4000-8000-000000000001', 'b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000', 'b1000000-0000-4000-8000-000000000000', 'PB1', 'bb000000-0000-4000-8000-000000000001');
insert into public.gasifier_observations (observation_id, submission_id, site_id, program_id, gasifier_code) values
  ('a5000000-0000-4000-8000-000000000001', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', 'a1000000-0000-4000-8000-000000000000', 'GA1'),
  ('a5000000-0000-4000-8000-000000000002', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000', null, 'GA2'),
  ('b5000000-0000-4000-8000-000000000001', 'b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000', 'b1000000-0000-4000-8000-000000000000', 'GB1');

-- ---------------------------------------------------------------------------
-- Derivation trigger
-- ---------------------------------------------------------------------------
select is((select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-000000000001'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'trigger fills petri_observations.company_id from the program');
select is((select company_id from public.gasifier_observations where observation_id = 'a5000000-0000-4000-8000-000000000002'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'gasifier row with NULL program_id gets company_id through its site');

update public.petri_observations set company_id = 'cb000000-0000-4000-8000-000000000000'
 where observation_id = 'a4000000-0000-4000-8000-000000000001';
select is((select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-000000000001'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'a directly written company_id is replaced by the program''s');

update public.petri_observations set program_id = 'b1000000-0000-4000-8000-000000000000'
 where observation_id = 'a4000000-0000-4000-8000-000000000002';
select is((select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-000000000002'),
  'cb000000-0000-4000-8000-000000000000'::uuid, 'company_id follows an update of program_id');
update public.petri_observations set program_id = 'a1000000-0000-4000-8000-000000000000'
 where observation_id = 'a4000000-0000-4000-8000-000000000002';

select throws_like(
  $$insert into public.petri_observations (submission_id, site_id, program_id, petri_code)
    values ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
            'ffffffff-0000-4000-8000-000000000000', 'bad')$$,
  '%program_id ffffffff-0000-4000-8000-000000000000 does not exist%',
  'an unknown program is rejected with a message naming it');

-- the same function on any table with program_id, site_id and company_id
create temporary table zz_generic (id int, site_id uuid, program_id uuid, company_id uuid, note text);
create trigger set_company_id_from_program before insert on zz_generic
  for each row execute function private.set_company_id_from_program();
insert into zz_generic (id, site_id, note) values (1, 'b2000000-0000-4000-8000-000000000000', 'kept');
select is((select (company_id, note) from zz_generic where id = 1),
  ('cb000000-0000-4000-8000-000000000000'::uuid, 'kept'::text),
  'the trigger function works unchanged on another table and leaves other columns alone');
create temporary table zz_no_company (id int, site_id uuid, program_id uuid);
create trigger set_company_id_from_program before insert on zz_no_company
  for each row execute function private.set_company_id_from_program();
select throws_like(
  $$insert into zz_no_company values (1, null, 'a1000000-0000-4000-8000-000000000000')$$,
  '%lacks a program_id, site_id or company_id column%',
  'the trigger function refuses a table without company_id');

-- ---------------------------------------------------------------------------
-- The setup step fills the rows written before the push (trigger off, as then)
-- ---------------------------------------------------------------------------
alter table public.petri_observations disable trigger set_company_id_from_program;
alter table public.gasifier_observations disable trigger set_company_id_from_program;
insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, company_id) values
  ('a4000000-0000-4000-8000-0000000000ff', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
   'a1000000-0000-4000-8000-000000000000', 'before the push', null),
  ('a4000000-0000-4000-8000-0000000000fe', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
   'a1000000-0000-4000-8000-000000000000', 'stale', 'cb000000-0000-4000-8000-000000000000');
insert into public.gasifier_observations (observation_id, submission_id, site_id, program_id, gasifier_code, company_id) values
  ('a5000000-0000-4000-8000-0000000000ff', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
   null, 'before the push', null);
alter table public.petri_observations enable trigger set_company_id_from_program;
alter table public.gasifier_observations enable trigger set_company_id_from_program;
-- as right after a push: the batches not started
delete from partition_mgmt.setup_progress where task in ('petri:company_id', 'gasifier:company_id');
select is((select array_agg(task order by ord) from partition_mgmt.setup_tasks() where not done),
  array['gasifier:company_id', 'gasifier:company_id_check', 'petri:company_id', 'petri:company_id_check'],
  'the company_id steps are pending again (the check finds the rows through the index)');
select is((select count(*)::int from partition_mgmt.pre_migration_check('petri') where check_name = 'setup step petri:company_id' and status = 'blocker'), 1,
  'the pre-check blocks the migration while the step is pending');
-- (one statement per call, as every driver makes them: calls within one statement see its snapshot)
create temporary table zz_steps as select s.task, s.state from partition_mgmt.setup_step(5) s;
insert into zz_steps select s.task, s.state from partition_mgmt.setup_step(5) s;
insert into zz_steps select s.task, s.state from partition_mgmt.setup_step(5) s;
insert into zz_steps select s.task, s.state from partition_mgmt.setup_step(5) s;
select is((select array_agg(s.task || ' ' || s.state order by s.task) from zz_steps s where s.state <> 'idle'),
  array['gasifier:company_id done', 'petri:company_id done'],
  'two setup steps fill both tables (each one call here); then the checks find nothing left and nothing is pending');
select is((select array[
             (select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-0000000000ff'),
             (select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-0000000000fe'),
             (select company_id from public.gasifier_observations where observation_id = 'a5000000-0000-4000-8000-0000000000ff')]),
  array_fill('ca000000-0000-4000-8000-000000000000'::uuid, array[3]),
  'the step sets company A on the missing and the stale petri row and on the NULL-program gasifier row');
select is((select array[rows_updated, rows_corrected] from partition_mgmt.setup_progress where task = 'petri:company_id'),
  array[2, 1]::bigint[], 'it updated exactly those two petri rows (one of them corrected)');
delete from partition_mgmt.setup_progress where task = 'petri:company_id';
select is((select (partition_mgmt.setup_step(5, 'petri:company_id')).state), 'done', 'a second pass runs');
select is((select rows_updated from partition_mgmt.setup_progress where task = 'petri:company_id'), 0::bigint,
  'and changes nothing');

-- a row the sweep did not see (an app update that moves a row behind it): the check finds it
alter table public.petri_observations disable trigger set_company_id_from_program;
insert into public.petri_observations (observation_id, submission_id, site_id, program_id, petri_code, company_id) values
  ('a4000000-0000-4000-8000-0000000000fd', 'a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
   'a1000000-0000-4000-8000-000000000000', 'behind the sweep', null);
alter table public.petri_observations enable trigger set_company_id_from_program;
select is((select array_agg(task order by ord) from partition_mgmt.setup_tasks() where not done), array['petri:company_id_check'],
  'the check step is pending: a row without company_id, found through the index');
create temporary table zz_check as select s.task, s.state from partition_mgmt.setup_step(5) s;
select is((select task || ' ' || state from zz_check), 'petri:company_id_check done', 'the check step fills it');
select is((select company_id from public.petri_observations where observation_id = 'a4000000-0000-4000-8000-0000000000fd'),
  'ca000000-0000-4000-8000-000000000000'::uuid, 'the row has its company');

-- ---------------------------------------------------------------------------
-- private.user_company_ids()
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
select is(private.user_company_ids(), array['ca000000-0000-4000-8000-000000000000'::uuid],
  'user_company_ids() returns the user''s company');
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000003","role":"authenticated"}', true);
select is(private.user_company_ids(), '{}'::uuid[], 'user_company_ids() is empty for a deactivated user');
select set_config('request.jwt.claims', '', true);
select is(private.user_company_ids(), '{}'::uuid[], 'user_company_ids() is empty without a user');

-- ---------------------------------------------------------------------------
-- The app's policies ANDed with company isolation: member A
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"authenticated"}', true);
set local role authenticated;
select is(array[
    (select count(*)::int from public.petri_observations), (select count(*)::int from public.gasifier_observations),
    (select count(*)::int from public.petri_observations where company_id <> 'ca000000-0000-4000-8000-000000000000')],
  array[5, 3, 0], 'member A sees its 5 petri and 3 gasifier observations, none of B''s');
select is((select count(*)::int from public.users), 1, 'member A sees only its own profile (the app''s policy)');
select throws_ok(
  $$insert into public.petri_observations (submission_id, site_id, program_id, petri_code)
    values ('b3000000-0000-4000-8000-000000000000', 'b2000000-0000-4000-8000-000000000000',
            'b1000000-0000-4000-8000-000000000000', 'sneaky')$$,
  '42501', null, 'A cannot insert a petri observation into B''s program');
select lives_ok(
  $$insert into public.petri_observations (submission_id, site_id, program_id, petri_code)
    values ('a3000000-0000-4000-8000-000000000000', 'a2000000-0000-4000-8000-000000000000',
            'a1000000-0000-4000-8000-000000000000', 'mine')$$,
  'A can insert into its own program (company_id filled by the trigger passes both policies)');
delete from public.petri_observations where observation_id in ('a4000000-0000-4000-8000-000000000001', 'a4000000-0000-4000-8000-000000000002');
update public.petri_observations set notes = 'touched by A' where observation_id = 'b4000000-0000-4000-8000-000000000001';
update public.pilot_programs set name = 'renamed by A' where program_id = 'a1000000-0000-4000-8000-000000000000';
reset role;
select is((select array_agg(petri_code order by petri_code) from public.petri_observations where observation_id::text like 'a4000000%0000000000_'),
  array['PA2'], 'A deleted the observation it wrote, not the one a colleague wrote (the app''s policy)');
select is((select notes from public.petri_observations where observation_id = 'b4000000-0000-4000-8000-000000000001'),
  null, 'A''s update did not reach B''s petri observation');
select is((select name from public.pilot_programs where program_id = 'a1000000-0000-4000-8000-000000000000'), 'Program A',
  'a member who is not admin cannot rename the program (the app''s policy)');

-- a permissive policy of the app that opens every row cannot open another company's
create policy zz_wide_open on public.petri_observations for select to authenticated using (true);
set local role authenticated;
select is((select count(*)::int from public.petri_observations where company_id = 'cb000000-0000-4000-8000-000000000000'), 0,
  'with a permissive using (true) added by the app, A still sees none of B''s rows (restrictive isolation)');
reset role;
drop policy zz_wide_open on public.petri_observations;

-- ---------------------------------------------------------------------------
-- Admin A, deactivated A, anon, service_role
-- ---------------------------------------------------------------------------
select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000002","role":"authenticated"}', true);
set local role authenticated;
update public.pilot_programs set name = 'renamed by admin A' where program_id = 'a1000000-0000-4000-8000-000000000000';
update public.pilot_programs set name = 'renamed by admin A' where program_id = 'b1000000-0000-4000-8000-000000000000';
reset role;
select is((select array_agg(name order by name) from public.pilot_programs where program_id::text like '_1000000%'),
  array['Program B', 'renamed by admin A'], 'admin A renames its company''s program, not B''s');

select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000003","role":"authenticated"}', true);
set local role authenticated;
select is((select count(*)::int from public.petri_observations) + (select count(*)::int from public.gasifier_observations), 0,
  'a deactivated user sees no observation');
reset role;

select set_config('request.jwt.claims', '{"sub":"aa000000-0000-4000-8000-000000000001","role":"anon"}', true);
set local role anon;
select is((select count(*)::int from public.petri_observations) + (select count(*)::int from public.gasifier_observations)
          + (select count(*)::int from public.companies),
  0, 'anon sees nothing, even with a user''s sub in the claims');
reset role;

select set_config('request.jwt.claims', '{"role":"service_role"}', true);
set local role service_role;
select is((select count(distinct company_id)::int from public.petri_observations
           where company_id in ('ca000000-0000-4000-8000-000000000000', 'cb000000-0000-4000-8000-000000000000')),
  2, 'service_role sees the observations of both companies');
reset role;

-- ---------------------------------------------------------------------------
-- lock_for_ddl
-- ---------------------------------------------------------------------------
select throws_like($$select private.lock_for_ddl(array['public.sites'], 'exclusive-ish')$$,
  '%exclusive-ish is not a lock mode%', 'lock_for_ddl refuses a bad lock mode, naming it');

select * from finish();
rollback;
