-- Local stack: the emulated Supabase bootstrap behaves like the hosted image.
-- Covers: role attributes of postgres and the API roles, auth.uid()/role()/email()/jwt() under
-- request.jwt.claims as PostgREST sets them, hosted default privileges on new public tables,
-- pg_cron installed in pg_catalog with hosted grants, the supabase_realtime publication as hosted
-- creates it (empty, default options, owned by postgres).
begin;
select plan(18);

select is((select rolsuper from pg_roles where rolname = current_user), false, 'tests run as a non-superuser (postgres)');
select is(current_user::text, 'postgres', 'connected as postgres');
select is((select rolbypassrls from pg_roles where rolname = 'postgres'), true, 'postgres bypasses RLS');
select is((select rolcreaterole and rolcreatedb and rolreplication from pg_roles where rolname = 'postgres'), true,
  'postgres has CREATEROLE, CREATEDB, REPLICATION');
select is((select rolbypassrls from pg_roles where rolname = 'service_role'), true, 'service_role bypasses RLS');
select is((select rolbypassrls or rolcanlogin from pg_roles where rolname = 'authenticated'), false,
  'authenticated is NOLOGIN and subject to RLS');
select is((select rolcanlogin and not rolinherit from pg_roles where rolname = 'authenticator'), true,
  'authenticator logs in and does not inherit');

-- acting as a user, the way PostgREST does per request
select set_config('request.jwt.claims',
  '{"sub":"00000000-0000-4000-8000-0000000000aa","role":"authenticated","email":"u@example.com"}', true);
set local role authenticated;
select is(auth.uid(), '00000000-0000-4000-8000-0000000000aa'::uuid, 'auth.uid() reads sub from request.jwt.claims');
select is(auth.role(), 'authenticated', 'auth.role() reads role');
select is(auth.email(), 'u@example.com', 'auth.email() reads email');
select is(auth.jwt() ->> 'sub', '00000000-0000-4000-8000-0000000000aa', 'auth.jwt() returns the claims');
reset role;

-- default privileges on public, as hosted: a new table is granted to the API roles
create table public.zz_default_privs_probe (id int);
select ok(has_table_privilege('anon', 'public.zz_default_privs_probe', 'select,insert,update,delete'),
  'anon gets the hosted default privileges on a new public table');
select ok(has_table_privilege('authenticated', 'public.zz_default_privs_probe', 'select,insert,update,delete'),
  'authenticated gets them too');

-- pg_cron as hosted
select is((select extnamespace::regnamespace::text from pg_extension where extname = 'pg_cron'), 'pg_catalog',
  'pg_cron lives in pg_catalog');
select ok(has_table_privilege('postgres', 'cron.job', 'select') and not has_table_privilege('postgres', 'cron.job', 'insert'),
  'postgres may only SELECT cron.job');
select ok(has_function_privilege('postgres', 'cron.schedule(text,text,text)', 'execute'), 'postgres may call cron.schedule');

-- Realtime's publication as hosted: empty, not FOR ALL TABLES, default options, owned by postgres
select is((select row(pubowner::regrole::text, puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot)::text
           from pg_publication where pubname = 'supabase_realtime'),
  '(postgres,f,t,t,t,t,f)', 'supabase_realtime exists as hosted creates it: owner postgres, not FOR ALL TABLES, publishes insert, update, delete, truncate, not via the partition root');
select is((select count(*)::int from pg_publication_rel r join pg_publication p on p.oid = r.prpubid where p.pubname = 'supabase_realtime')
          + (select count(*)::int from pg_publication_namespace n join pg_publication p on p.oid = n.pnpubid where p.pubname = 'supabase_realtime'),
  0, 'supabase_realtime starts empty (the bundle''s push adds nothing to it)');

select * from finish();
rollback;
