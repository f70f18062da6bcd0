-- pg_migsafe 0.4.0 -> 0.5.0 (ALTER EXTENSION pg_migsafe UPDATE TO '0.5.0').
-- Classification v2, second part: see CHANGELOG.md. One new function and a new
-- migsafe.dry_run(): a statement that cannot run in the dry run's transaction only
-- because of CONCURRENTLY is run in its plain form, so that the statements after it
-- are judged as if it had run. Everything else is in the library
-- (tests/integration/test_upgrade.py compares an updated database with a fresh
-- install, catalog by catalog).

CREATE OR REPLACE FUNCTION "_in_transaction_form"(
	"statement" TEXT /* & str */
) RETURNS TEXT /* Option < String > */
STRICT STABLE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'in_transaction_form_wrapper';

CREATE OR REPLACE FUNCTION migsafe.dry_run(sql text) RETURNS SETOF migsafe.dry_run_step
LANGUAGE plpgsql AS $$
DECLARE
  st record;
  res migsafe.dry_run_step[] := '{}';
  r migsafe.dry_run_step;
  before_doc text;
  after_doc text;
  files jsonb;
  locks_before text[];
  t0 timestamptz;
  err text;
  failed boolean := false;
  n int := 0;
  findings jsonb;
  changes jsonb;
  cmm text;
BEGIN
  IF sql IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: sql must not be NULL' USING ERRCODE = '22004';
  END IF;
  before_doc := migsafe._live_doc();
  BEGIN
    FOR st IN SELECT * FROM migsafe._split(sql) LOOP
      n := n + 1;
      SELECT jsonb_agg(jsonb_build_object('rule_id', c.rule_id, 'severity', c.severity, 'object', c.object,
                                          'lock_mode', c.lock_mode, 'rewrites', c.rewrites, 'data_loss', c.data_loss,
                                          'message', c.message, 'decision', c.decision))
        INTO findings FROM migsafe.check(st.statement) c WHERE c.rule_id <> 'safe';
      r := (n, st.statement, NULL, coalesce(findings, '[]'), '{}', '{}', NULL, NULL, NULL);
      IF failed THEN
        r.outcome := 'not run';
        r.detail := 'an earlier statement failed; a real run would stop there';
      ELSIF NOT st.runnable AND migsafe._in_transaction_form(st.statement) IS NULL THEN
        r.outcome := 'not run';
        r.detail := st.why;
      ELSE
        SELECT jsonb_object_agg(c.oid::text, c.relfilenode) INTO files
          FROM pg_class c WHERE c.relkind IN ('r', 'm', 'p', 'i', 'S', 't') AND c.oid >= 16384;
        locks_before := ARRAY(SELECT l.relation::text || '/' || l.mode FROM pg_locks l
                               WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.relation >= 16384);
        t0 := clock_timestamp();
        err := NULL;
        BEGIN
          IF st.runnable THEN
            EXECUTE st.statement;
          ELSE
            -- CONCURRENTLY cannot run in the dry run's transaction: its plain form makes
            -- the same change, so that the statements after it are judged as if it had
            -- run. The guard's warnings about the plain form are not the migration's.
            cmm := current_setting('client_min_messages');
            PERFORM set_config('client_min_messages', 'error', true);
            EXECUTE migsafe._in_transaction_form(st.statement);
            PERFORM set_config('client_min_messages', cmm, true);
          END IF;
        EXCEPTION WHEN OTHERS THEN
          err := SQLERRM || ' (SQLSTATE ' || SQLSTATE || ')';
          r.outcome := CASE WHEN SQLSTATE = 'MS001' THEN 'refused' ELSE 'error' END;
        END;
        r.duration_ms := round((extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric, 3);
        IF err IS NOT NULL THEN
          failed := true;
          r.detail := err;
        ELSIF NOT st.runnable THEN
          r.outcome := 'ok';
          r.detail := st.why || '. Replayed here without CONCURRENTLY, so that the statements after it see its effect; '
                      'a real run takes none of the plain form''s locks and its duration differs';
        ELSE
          r.outcome := 'ok';
          r.locks := ARRAY(SELECT DISTINCT c.oid::regclass::text || ': ' || l.mode
                             FROM pg_locks l
                             JOIN pg_class c ON c.oid = l.relation
                             JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.relation >= 16384
                              AND c.relkind IN ('r', 'p', 'm', 'v', 'S', 'i', 'I', 'f')
                              AND n.nspname NOT IN ('migsafe', 'migsafe_recycle', 'pg_toast')
                              AND l.relation::text || '/' || l.mode <> ALL (locks_before)
                            ORDER BY 1);
          r.rewritten := ARRAY(SELECT c.oid::regclass::text FROM pg_class c
                                WHERE files ? c.oid::text AND (files ->> c.oid::text)::oid <> c.relfilenode
                                  AND c.relkind IN ('r', 'm', 'p')
                                ORDER BY 1);
        END IF;
      END IF;
      res := res || r;
    END LOOP;
    after_doc := migsafe._live_doc();
    SELECT jsonb_agg(jsonb_build_object('kind', d.kind, 'identity', d.identity, 'action', d.action,
                                        'before', d.before, 'after', d.after, 'loses_data', d.loses_data))
      INTO changes FROM migsafe._diff_docs(before_doc::json, after_doc::json) d;
    RAISE EXCEPTION USING ERRCODE = 'MS0DR';
  EXCEPTION WHEN SQLSTATE 'MS0DR' THEN NULL;
  END;
  FOREACH r IN ARRAY res LOOP
    RETURN NEXT r;
  END LOOP;
  r := (n + 1, NULL, CASE WHEN failed THEN 'would fail' ELSE 'would succeed' END, NULL, NULL, NULL, NULL,
        format('%s statements; everything was rolled back; %s schema changes (see changes)', n, coalesce(jsonb_array_length(changes), 0)),
        coalesce(changes, '[]'));
  RETURN NEXT r;
END
$$;

-- The upgrade itself goes into the audit log when this transaction commits.
SELECT migsafe._note_upgrade('0.4.0', '0.5.0');
