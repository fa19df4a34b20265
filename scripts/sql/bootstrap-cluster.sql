-- Local emulation of the roles Supabase's hosted image has (run as the bootstrap superuser
-- supabase_admin). Dev/test infrastructure only: never part of supabase/migrations.
-- Idempotent: every start runs it again.
\set ON_ERROR_STOP on

do $$
declare
  v_role text;
begin
  -- postgres: the role users connect as on hosted Supabase. NOT a superuser.
  if not exists (select from pg_roles where rolname = 'postgres') then
    create role postgres login;
  end if;
  alter role postgres nosuperuser createdb createrole replication bypassrls login password 'postgres';

  foreach v_role in array array['anon', 'authenticated', 'service_role'] loop
    if not exists (select from pg_roles where rolname = v_role) then
      execute format('create role %I nologin noinherit', v_role);
    end if;
  end loop;
  alter role service_role bypassrls;

  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  alter role authenticator password 'postgres';

  if not exists (select from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin noinherit createrole login;
  end if;
  alter role supabase_auth_admin password 'postgres';
end
$$;

grant anon, authenticated, service_role to authenticator;
-- hosted grants the API roles to postgres so it can `set role` to act as a client
grant anon, authenticated, service_role to postgres;
grant pg_read_all_stats to postgres;
grant pg_signal_backend to postgres;
grant pg_monitor to postgres;

alter role postgres set search_path = "$user", public, extensions;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
-- as on hosted (supabase/postgres migrations): PostgREST's login role also waits at most 8 s for
-- a lock; Auth's role does not sit idle in a transaction
alter role authenticator set lock_timeout = '8s';
alter role supabase_auth_admin set idle_in_transaction_session_timeout = '60s';
