-- The audit log: one append-only, hash-chained table written only by pg_migsafe's
-- background writer, and the views auditors query. See docs/audit.md.

-- `kind` and `migration` repeat the record's own keys so that they can be indexed
-- without parsing the JSON; the hash covers them too.
CREATE TABLE migsafe.audit_log (
  seq       bigint PRIMARY KEY,
  kind      text   NOT NULL,
  migration text,
  record    json   NOT NULL,
  hash      text   NOT NULL
);
CREATE INDEX audit_log_migration ON migsafe.audit_log (migration);
CREATE INDEX audit_log_kind ON migsafe.audit_log (kind, seq);
COMMENT ON TABLE migsafe.audit_log IS
  'pg_migsafe audit log: append-only, hash-chained (migsafe.verify_log()); see docs/audit.md';

REVOKE ALL ON migsafe.audit_log FROM PUBLIC;
GRANT SELECT ON migsafe.audit_log TO migsafe_auditor;

-- Append-only, for everyone: the owner and superusers too. ENABLE ALWAYS keeps the
-- triggers firing under session_replication_role = replica; disabling them is DDL on
-- the extension's objects, which the hook refuses.
CREATE FUNCTION migsafe._audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = 'MS004',
    MESSAGE = format('pg_migsafe: %s on migsafe.audit_log refused: the audit log is append-only', TG_OP),
    DETAIL = 'Rows are written only by the pg_migsafe audit writer and are never changed or removed; each row''s hash chains it to the one before.',
    HINT = 'Read the log through migsafe.statements, migsafe.migrations and migsafe.refusals; check it with migsafe.verify_log().';
END
$$;

CREATE FUNCTION migsafe._audit_log_writer_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT migsafe._is_audit_writer() THEN
    RAISE EXCEPTION USING
      ERRCODE = 'MS004',
      MESSAGE = 'pg_migsafe: INSERT into migsafe.audit_log refused: only the pg_migsafe audit writer appends to the audit log',
      DETAIL = 'The log records what the server saw; rows written by sessions could claim anything.',
      HINT = 'Name a migration with migsafe.set_migration_name(); everything else is recorded automatically.';
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON migsafe.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION migsafe._audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON migsafe.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION migsafe._audit_log_append_only();
CREATE TRIGGER audit_log_writer_only BEFORE INSERT ON migsafe.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION migsafe._audit_log_writer_only();
ALTER TABLE migsafe.audit_log ENABLE ALWAYS TRIGGER audit_log_no_update_delete;
ALTER TABLE migsafe.audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate;
ALTER TABLE migsafe.audit_log ENABLE ALWAYS TRIGGER audit_log_writer_only;

-- Phase changes reach the audit log when their transaction commits.
CREATE FUNCTION migsafe._phase_event_to_audit() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM migsafe._queue_phase_event(NEW.phase_id, NEW.event, NEW.by_role::text,
                                     to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
                                     NEW.detail);
  RETURN NULL;
END
$$;
CREATE TRIGGER phase_event_to_audit AFTER INSERT ON migsafe.phase_event
  FOR EACH ROW EXECUTE FUNCTION migsafe._phase_event_to_audit();
ALTER TABLE migsafe.phase_event ENABLE ALWAYS TRIGGER phase_event_to_audit;

-- ------------------------------------------------------------------ views

CREATE VIEW migsafe.statements AS
SELECT l.seq,
       r->>'migration'                          AS migration,
       (r->>'n')::int                           AS statement_no,
       (r->>'started_at')::timestamptz          AS started_at,
       (r->>'duration_us')::bigint              AS duration_us,
       (r->>'lock_wait_us')::bigint             AS lock_wait_us,
       r->'session'->>'database'                AS database,
       r->'session'->>'session_user'            AS session_user,
       r->'session'->>'current_user'            AS current_user,
       r->'session'->>'application_name'        AS application_name,
       (r->'session'->>'client_addr')::inet     AS client_addr,
       (r->'session'->>'pid')::int              AS pid,
       (r->>'xid')::xid8                        AS xid,
       r->>'command_tag'                        AS command_tag,
       r->>'statement'                          AS statement,
       (r->>'statement_truncated')::boolean     AS statement_truncated,
       (r->>'statement_bytes')::int             AS statement_bytes,
       (r->>'nesting')::int                     AS nesting,
       ARRAY(SELECT jsonb_array_elements_text(coalesce(r->'objects', '[]'))) AS objects,
       ARRAY(SELECT f->>'rule' FROM jsonb_array_elements(coalesce(r->'findings', '[]')) f) AS rule_ids,
       coalesce(r->'findings', '[]')            AS findings,
       r->>'decision'                           AS decision,
       (r->>'phase_id')::bigint                 AS phase_id,
       r->>'outcome'                            AS outcome,
       r->>'sqlstate'                           AS sqlstate,
       r->>'error'                              AS error,
       (r->>'lock_timeout_ms')::int             AS lock_timeout_applied_ms,
       coalesce(r->'blockers', '[]')            AS blockers,
       coalesce((r->>'lock_attempts_total')::int, 0) AS lock_attempts,
       coalesce(r->'lock_attempts', '[]')       AS lock_attempt_log,
       coalesce((r->>'lock_retry_exhausted')::boolean, false) AS lock_retry_exhausted
  FROM migsafe.audit_log l, LATERAL (SELECT l.record::jsonb AS r) x
 WHERE l.kind = 'statement';

CREATE VIEW migsafe.migrations AS
WITH s AS (
  SELECT l.seq, l.record::jsonb AS r FROM migsafe.audit_log l
   WHERE l.kind = 'migration_start'
), e AS (
  SELECT l.seq, l.record::jsonb AS r FROM migsafe.audit_log l
   WHERE l.kind = 'migration_end'
), running AS (
  SELECT migration FROM migsafe._running_migrations()
)
SELECT coalesce(s.r->>'migration', e.r->>'migration')                      AS migration,
       coalesce(e.r->>'name', s.r->>'name')                                AS name,
       coalesce(s.r->>'started_at', e.r->>'started_at')::timestamptz       AS started_at,
       (e.r->>'ended_at')::timestamptz                                     AS ended_at,
       (e.r->>'duration_us')::bigint                                       AS duration_us,
       coalesce((e.r->>'statements')::int,
                (SELECT count(*) FROM migsafe.audit_log x
                  WHERE x.migration = s.r->>'migration'
                    AND x.kind = 'statement')::int)                        AS statements,
       (e.r->>'refused')::int                                              AS refused,
       (e.r->>'failed')::int                                               AS failed,
       CASE WHEN e.r IS NOT NULL THEN e.r->>'outcome'
            WHEN s.r->>'migration' IN (SELECT migration FROM running) THEN 'running'
            ELSE 'never_finished' END                                      AS outcome,
       (e.r->>'over_budget')::boolean                                      AS over_budget,
       ARRAY(SELECT jsonb_array_elements_text(coalesce(e.r->'drizzle_hashes', '[]'))) AS drizzle_hashes,
       (e.r->>'snapshot')::bigint                                          AS snapshot,
       coalesce(e.r->'phases', s.r->'phases', '[]')                        AS phases,
       (e.r->>'xid')::xid8                                                 AS xid,
       coalesce(s.r, e.r)->'session'->>'database'                          AS database,
       coalesce(s.r, e.r)->'session'->>'session_user'                      AS session_user,
       coalesce(s.r, e.r)->'session'->>'application_name'                  AS application_name,
       (coalesce(s.r, e.r)->'session'->>'client_addr')::inet               AS client_addr,
       (coalesce(s.r, e.r)->'session'->>'pid')::int                        AS pid,
       coalesce(s.seq, e.seq)                                              AS first_seq
  FROM s FULL JOIN e ON e.r->>'migration' = s.r->>'migration';

CREATE VIEW migsafe.refusals AS
SELECT seq, migration, started_at, database, "session_user", "current_user", application_name,
       client_addr, pid, command_tag, statement, rule_ids, findings, sqlstate, error
  FROM migsafe.statements
 WHERE decision = 'refused';

CREATE VIEW migsafe.events AS
SELECT l.seq, l.kind,
       (r->>'at')::timestamptz AS at,
       l.migration,
       r->>'level' AS level,
       (r->>'phase_id')::bigint AS phase_id,
       r->>'event' AS phase_event,
       r AS record
  FROM migsafe.audit_log l, LATERAL (SELECT l.record::jsonb AS r) x
 WHERE l.kind IN ('alert', 'phase_event', 'config', 'unstorable', 'upgrade');

CREATE VIEW migsafe.duration_trends AS
SELECT date_trunc('day', started_at)::date                                          AS day,
       count(*)                                                                     AS migrations,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_us) / 1000)::numeric, 3) AS p50_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_us) / 1000)::numeric, 3) AS p95_ms,
       round((max(duration_us) / 1000.0)::numeric, 3)                               AS max_ms,
       count(*) FILTER (WHERE outcome <> 'committed')                               AS failures,
       count(*) FILTER (WHERE over_budget)                                          AS over_budget
  FROM migsafe.migrations
 WHERE outcome <> 'running'
 GROUP BY 1;

-- For postgres_exporter's custom queries: a metric name, one label, a value.
CREATE VIEW migsafe.metrics AS
SELECT 'migsafe_statements_total' AS metric, 'decision=' || decision || ',outcome=' || outcome AS labels,
       count(*)::float8 AS value
  FROM migsafe.statements GROUP BY decision, outcome
UNION ALL
SELECT 'migsafe_migrations_total', 'outcome=' || outcome, count(*)::float8
  FROM migsafe.migrations GROUP BY outcome
UNION ALL
SELECT m.metric, '', m.value FROM
  (SELECT coalesce(sum(greatest(lock_attempts - 1, 0)), 0)::float8 AS retries,
          count(*) FILTER (WHERE lock_retry_exhausted)::float8 AS exhausted,
          coalesce(sum((SELECT sum(jsonb_array_length(coalesce(a->'ended', '[]')))
                          FROM jsonb_array_elements(lock_attempt_log) a)), 0)::float8 AS ended
     FROM migsafe.statements WHERE lock_attempts > 0) s,
  LATERAL (VALUES ('migsafe_lock_retries_total', s.retries),
                  ('migsafe_lock_retry_budget_exhausted_total', s.exhausted),
                  ('migsafe_lock_blockers_ended_total', s.ended)) AS m(metric, value)
UNION ALL
SELECT m.metric, '', m.value FROM migsafe._queue_stats() q,
  LATERAL (VALUES ('migsafe_queue_records', q.queue_records::float8),
                  ('migsafe_queue_bytes', q.queue_bytes::float8),
                  ('migsafe_queued_total', q.queued::float8),
                  ('migsafe_written_total', q.written::float8),
                  ('migsafe_dropped_total', q.fallback::float8),
                  ('migsafe_spilled_total', migsafe._queue_spilled()::float8),
                  ('migsafe_writers', q.writers::float8),
                  ('migsafe_last_migration_duration_seconds',
                   coalesce((SELECT duration_us FROM migsafe.migrations WHERE ended_at IS NOT NULL
                              ORDER BY ended_at DESC LIMIT 1), q.last_migration_duration_us) / 1e6)) AS m(metric, value);

REVOKE ALL ON migsafe.statements, migsafe.migrations, migsafe.refusals, migsafe.events,
              migsafe.duration_trends, migsafe.metrics FROM PUBLIC;
GRANT SELECT ON migsafe.statements, migsafe.migrations, migsafe.refusals, migsafe.events,
                migsafe.duration_trends, migsafe.metrics TO migsafe_auditor;
REVOKE ALL ON FUNCTION migsafe._queue_stats(), migsafe._queue_spilled(), migsafe._running_migrations() FROM PUBLIC;
-- Only the phase_event trigger (running as the extension's owner in the phase
-- functions, or in the audit writer) queues phase events: nobody writes "approved by
-- …" into the log by calling it.
REVOKE ALL ON FUNCTION migsafe._queue_phase_event(bigint, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION migsafe._note_upgrade(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION migsafe._audit_log_append_only(), migsafe._audit_log_writer_only(),
  migsafe._phase_event_to_audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migsafe._queue_stats(), migsafe._queue_spilled(), migsafe._running_migrations() TO migsafe_auditor;
