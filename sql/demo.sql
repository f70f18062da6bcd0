-- pg_migsafe demo: an additive migration passes, a destructive one is refused.
-- `make demo` runs this file with psql against a fresh cluster; the integration
-- tests run it too and compare the output with tests/expected/demo.out.
\set VERBOSITY default
CREATE EXTENSION IF NOT EXISTS pg_migsafe;
SHOW migsafe.mode;

-- Release 1 (committed earlier): the application's schema and some data.
CREATE TABLE users (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email text NOT NULL,
  legacy_email text
);
CREATE VIEW user_directory AS SELECT id, email FROM users;
INSERT INTO users (email, legacy_email) VALUES ('ann@example.com', 'ann@old.example'), ('bob@example.com', NULL);

-- Release 2, additive (expand): everything passes.
ALTER TABLE users ADD COLUMN display_name text;
ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id), total numeric(12,2));
CREATE INDEX CONCURRENTLY users_email_idx ON users (email);

-- A risky statement runs, with a warning and the safe alternative.
CREATE INDEX orders_user_idx ON orders (user_id);

-- Release 3, destructive: refused, whatever client sends it.
ALTER TABLE users DROP COLUMN legacy_email;
DROP TABLE users CASCADE;
DO $$ BEGIN EXECUTE 'TRUNCATE users'; END $$;

-- Nothing was lost.
SELECT id, email, legacy_email FROM users ORDER BY id;

-- Check a migration file before running it (nothing is executed).
SELECT statement_no, rule_id, severity, decision
  FROM migsafe.check($$
    ALTER TABLE users ADD COLUMN phone text;
    ALTER TABLE users RENAME COLUMN email TO email_address;
    ALTER TABLE orders ALTER COLUMN total TYPE numeric(10,2);
  $$);

-- Every DDL statement above is in the audit log, the refused ones too although their
-- transactions rolled back. A background writer stores them a moment after they run.
DO $$BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT count(*) FROM migsafe.migrations WHERE outcome = 'rolled_back') >= 3;
    PERFORM pg_sleep(0.1);
  END LOOP;
END$$;
SELECT statement_no AS n, command_tag, decision, outcome, sqlstate, rule_ids
  FROM migsafe.statements ORDER BY seq;
SELECT outcome, count(*) FROM migsafe.migrations GROUP BY outcome ORDER BY outcome;
SELECT ok, reason FROM migsafe.verify_log();

-- Release 3, approved: a contract phase lets the drop run, and the recycle bin keeps
-- the values. A snapshot first, so that the release can be rolled back.
SELECT migsafe.snapshot('before release 3') AS before_release_3 \gset
SELECT migsafe.begin_phase('contract', 'release 3', objects => ARRAY['public.users.legacy_email'],
                           skip_expand => true) > 0 AS approved;
ALTER TABLE users DROP COLUMN legacy_email;
SELECT migsafe.end_phase() > 0 AS ended;
SELECT kind, object, row_count, state FROM migsafe.recycle_bin;

-- What changed since the snapshot, and the generated down migration.
SELECT kind, identity, action, loses_data FROM migsafe.diff(:before_release_3);
SELECT migsafe.rollback_sql(:before_release_3) AS down_migration;

-- Roll back: the column comes back with its values, and the schema matches again.
SELECT action, object, status FROM migsafe.rollback(:before_release_3, dry_run => false);
SELECT id, email, legacy_email FROM users ORDER BY id;
SELECT status, detail FROM migsafe.verify(:before_release_3) WHERE check_name = 'summary';
