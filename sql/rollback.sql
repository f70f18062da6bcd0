-- Verify, roll back and dry-run: built from the Rust helpers in src/snapshot.rs
-- (_rollback_plan, _diff_docs, _live_doc, _split) and the recycle bin.

CREATE TYPE migsafe.rollback_step AS (
  step    int,
  action  text,
  object  text,
  sql     text,
  status  text,
  detail  text
);

CREATE TYPE migsafe.dry_run_step AS (
  step        int,
  statement   text,
  outcome     text,
  findings    jsonb,
  locks       text[],
  rewritten   text[],
  duration_ms numeric,
  detail      text,
  changes     jsonb
);

-- Post-migration checks; see docs/rollback.md. Status: ok, info, warn, fail.
CREATE FUNCTION migsafe.verify(snapshot bigint DEFAULT NULL)
RETURNS TABLE (check_name text, object text, status text, detail text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sid bigint := snapshot;
  r record;
  mx numeric;
  nxt numeric;
  fails int := 0;
  warns int := 0;
  changes int := 0;
BEGIN
  IF sid IS NULL THEN
    SELECT max(s.id) INTO sid FROM migsafe.snapshot s;
  ELSIF NOT EXISTS (SELECT 1 FROM migsafe.snapshot s WHERE s.id = sid) THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot % does not exist (see migsafe.snapshots)', sid USING ERRCODE = '42704';
  END IF;
  IF sid IS NOT NULL THEN
    FOR r IN SELECT * FROM migsafe.diff(sid) LOOP
      changes := changes + 1;
      check_name := 'changed since snapshot ' || sid; object := r.identity; status := 'info';
      detail := r.kind || ' ' || r.action || CASE WHEN r.loses_data THEN ' (loses data)' ELSE '' END;
      RETURN NEXT;
    END LOOP;
  END IF;
  FOR r IN SELECT i.indexrelid::regclass::text AS idx, i.indrelid::regclass::text AS tbl
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname !~ '^pg_(toast_)?temp_' ORDER BY 1 LOOP
    fails := fails + 1;
    check_name := 'invalid index'; object := r.idx; status := 'fail';
    detail := format('index on %s is not valid (a failed or running CREATE INDEX CONCURRENTLY): DROP INDEX CONCURRENTLY %s; then build it again', r.tbl, r.idx);
    RETURN NEXT;
  END LOOP;
  FOR r IN SELECT k.conname, coalesce(k.conrelid::regclass::text, k.contypid::regtype::text) AS tbl, k.contypid <> 0 AS dom
             FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
            WHERE NOT k.convalidated AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'migsafe')
            ORDER BY 2, 1 LOOP
    warns := warns + 1;
    check_name := 'constraint not validated'; object := format('%I on %s', r.conname, r.tbl); status := 'warn';
    detail := format('NOT VALID: existing rows were never checked; ALTER %s %s VALIDATE CONSTRAINT %I',
                     CASE WHEN r.dom THEN 'DOMAIN' ELSE 'TABLE' END, r.tbl, r.conname);
    RETURN NEXT;
  END LOOP;
  FOR r IN SELECT s.seqrelid::regclass::text AS seq, d.refobjid::regclass::text AS tbl, a.attname,
                  s.seqincrement, s.seqstart, ps.last_value
             FROM pg_sequence s
             JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             JOIN pg_class c ON c.oid = s.seqrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_sequences ps ON ps.schemaname = n.nspname AND ps.sequencename = c.relname
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'migsafe', 'migsafe_recycle')
              AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype)
            ORDER BY 1 LOOP
    EXECUTE format('SELECT max(%I)::numeric FROM %s', r.attname, r.tbl) INTO mx;
    nxt := CASE WHEN r.last_value IS NULL THEN r.seqstart ELSE r.last_value + r.seqincrement END;
    IF mx IS NOT NULL AND r.seqincrement > 0 AND mx >= nxt THEN
      fails := fails + 1;
      check_name := 'sequence behind its column'; object := r.seq; status := 'fail';
      detail := format('next value %s, but %s.%I already holds %s: inserts will collide; SELECT setval(%L, %s)',
                       nxt, r.tbl, r.attname, mx, r.seq, mx);
      RETURN NEXT;
    END IF;
  END LOOP;
  check_name := 'summary'; object := NULL;
  status := CASE WHEN fails > 0 THEN 'fail' ELSE 'pass' END;
  detail := format('%s failed, %s warnings, %s', fails, warns,
                   CASE WHEN sid IS NULL THEN 'no snapshot to compare with'
                        ELSE format('%s changes since snapshot %s', changes, sid) END);
  RETURN NEXT;
END
$$;

-- A deploy gate: true when verify() fails nothing (and, with strict, warns of nothing).
CREATE FUNCTION migsafe.verify_ok(snapshot bigint DEFAULT NULL, strict boolean DEFAULT false) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT NOT EXISTS (SELECT 1 FROM migsafe.verify(snapshot) v
                      WHERE v.status = 'fail' OR (coalesce(strict, false) AND v.status = 'warn'))
$$;

-- Opens the rollback phase that approves what a rollback drops (for this
-- transaction only) and records it like the other phases.
CREATE FUNCTION migsafe._open_rollback_phase(snapshot bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  p_id bigint;
BEGIN
  PERFORM migsafe._require_approver('roll back the schema');
  INSERT INTO migsafe.phase (kind, name, reason, objects, session_pid, session_start, requested_by, valid_until, state, approved_by, approved_at)
  VALUES ('rollback', 'rollback to snapshot ' || snapshot, 'migsafe.rollback()', '{}', pg_backend_pid(),
          (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()),
          session_user, clock_timestamp() + interval '1 day', 'active', session_user, clock_timestamp())
  RETURNING id INTO p_id;
  INSERT INTO migsafe.phase_event (phase_id, event, by_role, detail) VALUES (p_id, 'opened', session_user, 'snapshot ' || snapshot);
  PERFORM migsafe._set_rollback_phase(p_id);
  RETURN p_id;
END
$$;

CREATE FUNCTION migsafe._close_rollback_phase(p_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM migsafe._set_rollback_phase(NULL);
  UPDATE migsafe.phase SET state = 'ended', ended_at = clock_timestamp() WHERE id = p_id;
  INSERT INTO migsafe.phase_event (phase_id, event, by_role) VALUES (p_id, 'ended', session_user);
END
$$;

-- Does a table (or one column of it) hold anything? Identity keys are valid SQL.
CREATE FUNCTION migsafe._has_data(tbl text, col text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  found_ boolean;
BEGIN
  IF to_regclass(tbl) IS NULL THEN
    RETURN false;
  END IF;
  IF col IS NULL THEN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', tbl) INTO found_;
  ELSE
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I IS NOT NULL)', tbl, col) INTO found_;
  END IF;
  RETURN found_;
END
$$;

-- What the rollback would destroy: tables and columns that hold data.
CREATE FUNCTION migsafe._rollback_losses(snapshot bigint) RETURNS text[]
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(array_agg(DISTINCT CASE WHEN p.drops_column IS NULL THEN 'table ' || p.drops_table
                                          ELSE 'column ' || p.drops_table || '."' || replace(p.drops_column, '"', '""') || '"' END), '{}')
    FROM migsafe._rollback_plan(snapshot) p
   WHERE p.executable AND p.drops_data AND p.drops_table IS NOT NULL
     AND migsafe._has_data(p.drops_table, p.drops_column)
$$;

CREATE FUNCTION migsafe._rollback_run(snapshot bigint, taken_at timestamptz) RETURNS SETOF migsafe.rollback_step
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ph bigint := migsafe._open_rollback_phase(snapshot);
  p record;
  rid bigint;
  n int := 0;
  restored text[] := '{}';
  remaining int;
  reordered int;
  s migsafe.rollback_step;
BEGIN
  -- 1. Whatever the recycle bin kept since the snapshot comes back with its data.
  -- (Planning reads the live catalog: only when the bin holds something newer.)
  FOR p IN SELECT * FROM migsafe._rollback_plan(snapshot)
            WHERE recreates_table IS NOT NULL
              AND EXISTS (SELECT 1 FROM migsafe.recycle r WHERE r.restored_at IS NULL
                             AND r.purged_at IS NULL AND r.dropped_at >= taken_at)
            ORDER BY step LOOP
    SELECT r.id INTO rid FROM migsafe.recycle r
     WHERE r.restored_at IS NULL AND r.purged_at IS NULL AND r.dropped_at >= taken_at
       AND migsafe._key(r.schema_name, r.table_name) = p.recreates_table
       AND ((p.recreates_column IS NULL AND r.kind = 'table') OR r.column_name = p.recreates_column AND r.kind = 'column')
     ORDER BY r.id LIMIT 1;   -- the first drop after the snapshot took the snapshot's object
    IF rid IS NOT NULL THEN
      n := n + 1;
      s := (n, 'restore', coalesce(p.recreates_table || '."' || replace(p.recreates_column, '"', '""') || '"', p.recreates_table),
            format('SELECT migsafe.undrop(%s, dependents => false)', rid), 'done',
            migsafe.undrop(rid, false) || ' (recycle bin id ' || rid || ')');
      restored := restored || p.identity;
      RETURN NEXT s;
    END IF;
  END LOOP;
  -- 2. The plan for what is left.
  FOR p IN SELECT * FROM migsafe._rollback_plan(snapshot) ORDER BY step LOOP
    n := n + 1;
    IF NOT p.executable THEN
      s := (n, p.operation, p.identity, p.sql, CASE p.operation WHEN 'note' THEN 'note' ELSE 'cannot revert' END, p.note);
    ELSE
      EXECUTE p.sql;
      s := (n, p.operation, p.identity, p.sql, 'done',
            CASE WHEN p.recreates_table IS NOT NULL
                 THEN concat_ws('; ', 'comes back empty: the recycle bin holds no copy', p.note)
                 ELSE p.note END);
    END IF;
    RETURN NEXT s;
  END LOOP;
  PERFORM migsafe._close_rollback_phase(ph);
  SELECT count(*) FILTER (WHERE d.kind <> 'column order'), count(*) FILTER (WHERE d.kind = 'column order')
    INTO remaining, reordered FROM migsafe.diff(snapshot) d;
  n := n + 1;
  s := (n, 'check', NULL, format('SELECT * FROM migsafe.diff(%s)', snapshot),
        CASE WHEN remaining = 0 THEN 'ok' ELSE 'differences remain' END,
        CASE WHEN remaining = 0 THEN 'the schema matches the snapshot'
                                     || CASE WHEN reordered > 0
                                             THEN ' (re-created columns are at the end of their table)' ELSE '' END
             ELSE remaining || ' differences remain: see migsafe.diff(' || snapshot || ')' END);
  RETURN NEXT s;
END
$$;

-- Takes the live schema back to a snapshot; see docs/rollback.md.
CREATE FUNCTION migsafe.rollback(snapshot bigint, dry_run boolean DEFAULT true, force boolean DEFAULT false)
RETURNS SETOF migsafe.rollback_step
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  snap record;
  losses text[];
  steps migsafe.rollback_step[] := '{}';
  s migsafe.rollback_step;
BEGIN
  IF snapshot IS NULL OR dry_run IS NULL OR force IS NULL THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot, dry_run and force must not be NULL' USING ERRCODE = '22004';
  END IF;
  SELECT s_.id, s_.taken_at INTO snap FROM migsafe.snapshot s_ WHERE s_.id = snapshot;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'pg_migsafe: snapshot % does not exist (see migsafe.snapshots)', snapshot USING ERRCODE = '42704';
  END IF;
  PERFORM migsafe._require_approver('roll back the schema');
  losses := migsafe._rollback_losses(snapshot);
  IF cardinality(losses) > 0 AND NOT force AND NOT dry_run THEN
    RAISE EXCEPTION 'pg_migsafe: rollback to snapshot % refused: it would drop data added since the snapshot (%)',
      snapshot, array_to_string(losses, ', ')
      USING ERRCODE = 'MS005',
            DETAIL = 'Objects created after the snapshot hold data now: ' || array_to_string(losses, '; ') || '.',
            HINT = format('Review with SELECT * FROM migsafe.rollback(%s); pass force => true to drop them (approved drops of tables still go to the recycle bin).', snapshot);
  END IF;
  IF NOT dry_run THEN
    RETURN QUERY SELECT * FROM migsafe._rollback_run(snapshot, snap.taken_at);
    RETURN;
  END IF;
  -- Dry run: the same steps, really executed, then rolled back.
  BEGIN
    steps := ARRAY(SELECT r FROM migsafe._rollback_run(snapshot, snap.taken_at) r);
    RAISE EXCEPTION USING ERRCODE = 'MS0DR';
  EXCEPTION
    WHEN SQLSTATE 'MS0DR' THEN NULL;
    WHEN OTHERS THEN
      steps := steps || (coalesce(cardinality(steps), 0) + 1, 'error', NULL, NULL, 'would fail',
                         SQLERRM || ' (SQLSTATE ' || SQLSTATE || ')')::migsafe.rollback_step;
  END;
  FOREACH s IN ARRAY steps LOOP
    IF s.status = 'done' THEN
      s.status := 'would run';
    ELSIF s.action = 'check' THEN
      s.status := 'would be ' || s.status;
    END IF;
    IF s.action IN ('drop', 'alter') AND cardinality(losses) > 0 AND EXISTS (
         SELECT 1 FROM unnest(losses) l WHERE l = 'table ' || s.object OR l = 'column ' || s.object) THEN
      s.status := 'would lose data';
      s.detail := concat_ws('; ', 'holds data added since the snapshot: needs force => true', s.detail);
    END IF;
    RETURN NEXT s;
  END LOOP;
END
$$;

-- Runs a migration in a transaction that is always rolled back; see docs/rollback.md.
-- No SET search_path: the statements run with the caller's, as in a real run.
CREATE FUNCTION migsafe.dry_run(sql text) RETURNS SETOF migsafe.dry_run_step
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
      ELSIF NOT st.runnable THEN
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
          EXECUTE st.statement;
        EXCEPTION WHEN OTHERS THEN
          err := SQLERRM || ' (SQLSTATE ' || SQLSTATE || ')';
          r.outcome := CASE WHEN SQLSTATE = 'MS001' THEN 'refused' ELSE 'error' END;
        END;
        r.duration_ms := round((extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric, 3);
        IF err IS NOT NULL THEN
          failed := true;
          r.detail := err;
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

REVOKE ALL ON FUNCTION migsafe.verify(bigint), migsafe.verify_ok(bigint, boolean),
  migsafe._open_rollback_phase(bigint), migsafe._close_rollback_phase(bigint), migsafe._has_data(text, text),
  migsafe._rollback_losses(bigint), migsafe._rollback_run(bigint, timestamptz),
  migsafe.rollback(bigint, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migsafe.verify(bigint), migsafe.verify_ok(bigint, boolean)
  TO migsafe_admin, migsafe_approver, migsafe_auditor;
GRANT EXECUTE ON FUNCTION migsafe.rollback(bigint, boolean, boolean), migsafe._rollback_losses(bigint),
  migsafe._rollback_run(bigint, timestamptz), migsafe._has_data(text, text), migsafe._open_rollback_phase(bigint),
  migsafe._close_rollback_phase(bigint) TO migsafe_admin, migsafe_approver;
REVOKE ALL ON FUNCTION migsafe.diff(bigint, bigint), migsafe.rollback_sql(bigint), migsafe._rollback_plan(bigint),
  migsafe._internal(text), migsafe._set_rollback_phase(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migsafe.diff(bigint, bigint), migsafe.rollback_sql(bigint)
  TO migsafe_admin, migsafe_approver, migsafe_auditor;
GRANT EXECUTE ON FUNCTION migsafe._rollback_plan(bigint) TO migsafe_admin, migsafe_approver;
