-- name: roles_group_exists :val
-- Whether the NOLOGIN group role $1 (bg_reader, bg_writer, bg_runtime) exists.
SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1);

-- name: roles_login_script :val
-- The statements that make $1 a LOGIN role with password verifier $2 and membership of $3,
-- creating it or bringing it in step; names and the verifier are quoted by the server.
SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text)
            THEN format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L; GRANT %I TO %I',
                        $1::text, $2::text, $3::text, $1::text)
            ELSE format('CREATE ROLE %I WITH LOGIN PASSWORD %L IN ROLE %I', $1::text, $2::text, $3::text)
       END;
