-- Schema snapshots: the catalog reader, the snapshot tables and migsafe.snapshot().
-- The document _catalog() builds is the one described in src/engine/schema/model.rs;
-- diffs, verification and rollback SQL are computed from it in Rust.

-- An identity key: every part double-quoted, inner quotes doubled ("public"."users").
-- (No SET clause, so that the planner can inline them into the catalog reader: every
-- name in them is schema-qualified instead.)
CREATE FUNCTION migsafe._key(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT '"'::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.replace(a, '"', '""') OPERATOR(pg_catalog.||) '"."'::pg_catalog.text
         OPERATOR(pg_catalog.||) pg_catalog.replace(b, '"', '""') OPERATOR(pg_catalog.||) '"'::pg_catalog.text
$$;

CREATE FUNCTION migsafe._key(a text, b text, c text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT '"'::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.replace(a, '"', '""') OPERATOR(pg_catalog.||) '"."'::pg_catalog.text
         OPERATOR(pg_catalog.||) pg_catalog.replace(b, '"', '""') OPERATOR(pg_catalog.||) '"."'::pg_catalog.text
         OPERATOR(pg_catalog.||) pg_catalog.replace(c, '"', '""') OPERATOR(pg_catalog.||) '"'::pg_catalog.text
$$;

-- One column of the document (see model.rs); a type so that json_agg names the fields.
CREATE TYPE migsafe._column AS (
  "name"          name,
  "position"      int2,
  "type"          text,
  "base_type"     name,
  "type_category" "char",
  "typmod"        int4,
  "collation"     text,
  "not_null"      boolean,
  "default"       text,
  "identity"      "char",
  "generated"     text,
  "local"         boolean,
  "comment"       text,
  "acl"           text[]
);

-- The schema as one JSON document, or the part of it a scope names:
--   {"relations": [["s","t"], ...],   tables, views, sequences and what belongs to
--                                      them (columns, constraints, indexes, triggers,
--                                      policies, owned sequences)
--    "types":     [["s","t"], ...],   enums and domains
--    "functions": [["s","f"], ...],   every overload of the name
--    "schemas":   ["s", ...],         the schema itself (not its contents)
--    "contents":  ["s", ...]}         the schema and everything in it
-- NULL reads everything. Names are matched exactly (already resolved).
CREATE FUNCTION migsafe._catalog(scope jsonb DEFAULT NULL) RETURNS json
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET jit = off SET work_mem = '64MB'
-- PL/pgSQL keeps the plans for the session; generic ones, so that the big query below
-- is planned once per session, not per automatic snapshot.
SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  everything boolean := scope IS NULL;
  model_nsps oid[];    -- every schema of the model
  whole oid[];         -- schemas read with everything in them
  nsp_ids oid[];       -- schemas whose own row is read
  rel_ids oid[];       -- tables, views, materialized views, sequences
  typ_ids oid[];       -- enums and domains
  fn_ids oid[];        -- functions and procedures
  doc json;
BEGIN
  model_nsps := ARRAY(
    SELECT n.oid FROM pg_namespace n
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'migsafe', 'migsafe_recycle')
       AND n.nspname !~ '^pg_(toast_)?temp_'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                         AND d.objid = n.oid AND d.objsubid = 0 AND d.deptype = 'e'));
  IF everything THEN
    whole := model_nsps;
    nsp_ids := model_nsps;
  ELSE
    whole := ARRAY(SELECT n.oid FROM pg_namespace n
                    WHERE n.oid = ANY (model_nsps)
                      AND n.nspname IN (SELECT jsonb_array_elements_text(coalesce(scope->'contents', '[]'))));
    nsp_ids := whole || ARRAY(SELECT n.oid FROM pg_namespace n
                    WHERE n.oid = ANY (model_nsps)
                      AND n.nspname IN (SELECT jsonb_array_elements_text(coalesce(scope->'schemas', '[]'))));
  END IF;
  -- Relations: whole schemas, and the named ones (an index lookup each).
  IF cardinality(whole) > 0 THEN
    rel_ids := ARRAY(SELECT c.oid FROM pg_class c
                      WHERE c.relnamespace = ANY (whole) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                        AND c.relpersistence <> 't');
  ELSE
    rel_ids := '{}';
  END IF;
  IF NOT everything THEN
    rel_ids := rel_ids || ARRAY(
      SELECT c.oid FROM jsonb_array_elements(coalesce(scope->'relations', '[]')) e
        JOIN pg_namespace n ON n.nspname = e->>0
        JOIN pg_class c ON c.relname = e->>1 AND c.relnamespace = n.oid
       WHERE n.oid = ANY (model_nsps) AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relpersistence <> 't');
    -- with the sequences they own
    rel_ids := rel_ids || ARRAY(
      SELECT d.objid FROM pg_depend d
       WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (rel_ids) AND d.refobjsubid > 0
         AND d.classid = 'pg_class'::regclass AND d.deptype = 'a');
  END IF;
  -- Not extension members, not identity columns' sequences (part of their column).
  rel_ids := ARRAY(SELECT DISTINCT x FROM unnest(rel_ids) x
                    WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                        AND d.objid = x AND d.deptype IN ('e', 'i')));
  IF everything OR cardinality(whole) > 0 OR jsonb_array_length(coalesce(scope->'types', '[]')) > 0 THEN
  typ_ids := ARRAY(
    SELECT t.oid FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.typtype IN ('e', 'd') AND n.oid = ANY (model_nsps)
       AND (n.oid = ANY (whole)
            OR (NOT everything AND (n.nspname, t.typname) IN (
                  SELECT e->>0, e->>1 FROM jsonb_array_elements(coalesce(scope->'types', '[]')) e)))
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                         AND d.objid = t.oid AND d.deptype = 'e'));
  ELSE
    typ_ids := '{}';
  END IF;
  IF everything OR cardinality(whole) > 0 OR jsonb_array_length(coalesce(scope->'functions', '[]')) > 0 THEN
  fn_ids := ARRAY(
    SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.prokind IN ('f', 'p', 'w') AND n.oid = ANY (model_nsps)
       AND (n.oid = ANY (whole)
            OR (NOT everything AND (n.nspname, p.proname) IN (
                  SELECT e->>0, e->>1 FROM jsonb_array_elements(coalesce(scope->'functions', '[]')) e)))
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                         AND d.objid = p.oid AND d.deptype = 'e'));
  ELSE
    fn_ids := '{}';
  END IF;
  IF everything THEN
    -- A full read is planned for its thousands of objects (hash joins), every time;
    -- the function's SET clause restores the setting when it returns.
    PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
  END IF;
  WITH
  nsp AS (
    SELECT n.oid, n.nspname, n.nspowner, n.nspacl FROM pg_namespace n WHERE n.oid = ANY (nsp_ids)
  ),
  rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relnamespace, n.nspname, c.relpersistence, c.relacl,
           c.relowner, c.relrowsecurity, c.relforcerowsecurity, c.relispartition, c.relispopulated
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = ANY (rel_ids)
  ),
  typ AS (
    SELECT t.oid, t.typname, t.typtype, t.typnamespace, n.nspname, t.typowner, t.typacl,
           t.typbasetype, t.typtypmod, t.typcollation, t.typnotnull, t.typdefaultbin, t.typdefault
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.oid = ANY (typ_ids)
  ),
  fn AS (
    SELECT p.oid, p.proname, p.prokind, n.nspname, p.proowner, p.proacl, p.prosrc
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.oid = ANY (fn_ids)
  ),
  cols AS (
    -- json_agg over a composite type: names come from the type, no per-row key lookup.
    SELECT a.attrelid,
           json_agg((
             a.attname,
             a.attnum,
             format_type(a.atttypid, a.atttypmod),
             coalesce(bt.typname, t.typname),
             coalesce(bt.typcategory, t.typcategory),
             a.atttypmod,
             CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 THEN
               CASE WHEN co.collnamespace = 'pg_catalog'::regnamespace THEN quote_ident(co.collname)
                    ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END END,
             a.attnotnull,
             CASE WHEN a.attgenerated = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
             nullif(a.attidentity, ''),
             CASE WHEN a.attgenerated = 's' THEN pg_get_expr(ad.adbin, ad.adrelid) END,
             a.attislocal,
             d.description,
             coalesce(a.attacl, '{}')::text[])::migsafe._column ORDER BY a.attnum) AS columns
      FROM pg_attribute a
      JOIN rel r ON r.oid = a.attrelid AND r.relkind IN ('r', 'p')
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
      LEFT JOIN pg_collation co ON co.oid = a.attcollation
      LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
      LEFT JOIN pg_description d ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped
     GROUP BY a.attrelid
  )
  SELECT json_build_object(
    'schemas', (
      SELECT json_agg(json_build_object(
               'name', n.nspname, 'owner', pg_get_userbyid(n.nspowner), 'comment', d.description,
               'acl', coalesce(n.nspacl, acldefault('n', n.nspowner))::text[]))
        FROM nsp n LEFT JOIN pg_description d ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass),
    'tables', (
      SELECT json_agg(json_build_object(
               'schema', r.nspname, 'name', r.relname, 'owner', pg_get_userbyid(r.relowner),
               'persistence', r.relpersistence,
               'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
               'partition_bound', CASE WHEN r.relispartition THEN pg_get_expr(pc.relpartbound, r.oid) END,
               'inherits', (SELECT json_agg(migsafe._key(pn.nspname, p.relname) ORDER BY i.inhseqno)
                              FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                              JOIN pg_namespace pn ON pn.oid = p.relnamespace
                             WHERE i.inhrelid = r.oid),
               'rls_enabled', r.relrowsecurity, 'rls_forced', r.relforcerowsecurity,
               'comment', d.description,
               'acl', coalesce(r.relacl, acldefault('r', r.relowner))::text[],
               'columns', coalesce(cols.columns, '[]')))
        FROM rel r
        JOIN pg_class pc ON pc.oid = r.oid
        LEFT JOIN cols ON cols.attrelid = r.oid
        LEFT JOIN pg_description d ON d.objoid = r.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
       WHERE r.relkind IN ('r', 'p')),
    'constraints', (
      SELECT json_agg(json_build_object(
               'table', migsafe._key(r.nspname, r.relname), 'name', k.conname,
               'kind', k.contype,
               'definition', pg_get_constraintdef(k.oid),
               'validated', k.convalidated, 'deferrable', k.condeferrable, 'deferred', k.condeferred,
               'references', CASE WHEN k.contype = 'f' THEN
                               (SELECT migsafe._key(fn_.nspname, f.relname) FROM pg_class f
                                  JOIN pg_namespace fn_ ON fn_.oid = f.relnamespace WHERE f.oid = k.confrelid) END,
               'local', k.conislocal,
               'comment', d.description))
        FROM pg_constraint k
        JOIN rel r ON r.oid = k.conrelid AND r.relkind IN ('r', 'p')
        LEFT JOIN pg_description d ON d.objoid = k.oid AND d.classoid = 'pg_constraint'::regclass
       WHERE k.contype IN ('p', 'u', 'c', 'f', 'x')),
    'indexes', (
      SELECT json_agg(json_build_object(
               'schema', r.nspname, 'name', ic.relname, 'table', migsafe._key(r.nspname, r.relname),
               -- An index that belongs to a constraint is described by the constraint
               -- (and created with it): deparsing it would only cost time.
               'definition', CASE WHEN NOT ck.owned THEN pg_get_indexdef(i.indexrelid) ELSE '' END,
               'valid', i.indisvalid, 'unique', i.indisunique,
               'constraint', ck.owned,
               'inherited', i.indexrelid IN (SELECT h.inhrelid FROM pg_inherits h),
               'comment', d.description))
        FROM pg_index i
        JOIN rel r ON r.oid = i.indrelid AND r.relkind IN ('r', 'p', 'm')
        JOIN pg_class ic ON ic.oid = i.indexrelid
        CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM pg_constraint k
                                             WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid
                                               AND k.contype IN ('p', 'u', 'x')) AS owned) ck
        LEFT JOIN pg_description d ON d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0),
    'sequences', (
      SELECT json_agg(json_build_object(
               'schema', r.nspname, 'name', r.relname, 'owner', pg_get_userbyid(r.relowner),
               'data_type', format_type(s.seqtypid, NULL),
               'start', s.seqstart, 'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
               'cache', s.seqcache, 'cycle', s.seqcycle,
               'owned_by', (SELECT migsafe._key(tn.nspname, t.relname, a.attname)
                              FROM pg_depend o JOIN pg_class t ON t.oid = o.refobjid
                              JOIN pg_namespace tn ON tn.oid = t.relnamespace
                              JOIN pg_attribute a ON a.attrelid = o.refobjid AND a.attnum = o.refobjsubid
                             WHERE o.classid = 'pg_class'::regclass AND o.objid = r.oid AND o.objsubid = 0
                               AND o.refclassid = 'pg_class'::regclass AND o.deptype = 'a' AND o.refobjsubid > 0
                             LIMIT 1),
               'last_value', CASE WHEN has_sequence_privilege(r.oid, 'SELECT,USAGE')
                                  THEN pg_sequence_last_value(r.oid) END,
               'comment', d.description,
               'acl', coalesce(r.relacl, acldefault('s', r.relowner))::text[]))
        FROM rel r
        JOIN pg_sequence s ON s.seqrelid = r.oid
        LEFT JOIN pg_description d ON d.objoid = r.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
       WHERE r.relkind = 'S'),
    'views', (
      SELECT json_agg(json_build_object(
               'schema', r.nspname, 'name', r.relname, 'owner', pg_get_userbyid(r.relowner),
               'materialized', r.relkind = 'm',
               'definition', pg_get_viewdef(r.oid),
               'depends_on', (SELECT json_agg(DISTINCT x.key) FROM (
                   SELECT migsafe._key(dn.nspname, dc.relname) AS key
                     FROM pg_rewrite rw
                     JOIN pg_depend dp ON dp.classid = 'pg_rewrite'::regclass AND dp.objid = rw.oid
                                      AND dp.refclassid = 'pg_class'::regclass AND dp.refobjid <> r.oid
                     JOIN pg_class dc ON dc.oid = dp.refobjid
                     JOIN pg_namespace dn ON dn.oid = dc.relnamespace
                    WHERE rw.ev_class = r.oid
                   UNION
                   SELECT migsafe._key(pn.nspname, p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')'
                     FROM pg_rewrite rw
                     JOIN pg_depend dp ON dp.classid = 'pg_rewrite'::regclass AND dp.objid = rw.oid
                                      AND dp.refclassid = 'pg_proc'::regclass
                     JOIN pg_proc p ON p.oid = dp.refobjid
                     JOIN pg_namespace pn ON pn.oid = p.pronamespace
                    WHERE rw.ev_class = r.oid
                      AND pn.nspname NOT IN ('pg_catalog', 'information_schema')) x),
               'has_data', CASE WHEN r.relkind = 'm' THEN r.relispopulated END,
               'comment', d.description,
               'acl', coalesce(r.relacl, acldefault('r', r.relowner))::text[]))
        FROM rel r
        LEFT JOIN pg_description d ON d.objoid = r.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
       WHERE r.relkind IN ('v', 'm')),
    'enums', (
      SELECT json_agg(json_build_object(
               'schema', t.nspname, 'name', t.typname, 'owner', pg_get_userbyid(t.typowner),
               'labels', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
               'comment', d.description,
               'acl', coalesce(t.typacl, acldefault('T', t.typowner))::text[]))
        FROM typ t
        LEFT JOIN pg_description d ON d.objoid = t.oid AND d.classoid = 'pg_type'::regclass
       WHERE t.typtype = 'e'),
    'domains', (
      SELECT json_agg(json_build_object(
               'schema', t.nspname, 'name', t.typname, 'owner', pg_get_userbyid(t.typowner),
               'base_type', format_type(t.typbasetype, t.typtypmod),
               'collation', CASE WHEN t.typcollation <> bt.typcollation AND t.typcollation <> 0 THEN
                              (SELECT CASE WHEN co.collnamespace = 'pg_catalog'::regnamespace THEN quote_ident(co.collname)
                                           ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END
                                 FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                WHERE co.oid = t.typcollation) END,
               'not_null', t.typnotnull,
               'default', CASE WHEN t.typdefaultbin IS NOT NULL THEN pg_get_expr(t.typdefaultbin, 0) ELSE t.typdefault END,
               'checks', (SELECT json_agg(json_build_object('name', k.conname, 'definition', pg_get_constraintdef(k.oid),
                                                            'validated', k.convalidated) ORDER BY k.conname)
                            FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c'),
               'comment', d.description,
               'acl', coalesce(t.typacl, acldefault('T', t.typowner))::text[]))
        FROM typ t
        JOIN pg_type bt ON bt.oid = t.typbasetype
        LEFT JOIN pg_description d ON d.objoid = t.oid AND d.classoid = 'pg_type'::regclass
       WHERE t.typtype = 'd'),
    'functions', (
      SELECT json_agg(json_build_object(
               'schema', f.nspname, 'name', f.proname, 'kind', f.prokind, 'owner', pg_get_userbyid(f.proowner),
               'arguments', pg_get_function_identity_arguments(f.oid),
               'result', pg_get_function_result(f.oid),
               'definition', pg_get_functiondef(f.oid),
               'body_hash', md5(coalesce(f.prosrc, '')),
               'comment', d.description,
               'acl', coalesce(f.proacl, acldefault('f', f.proowner))::text[]))
        FROM fn f
        LEFT JOIN pg_description d ON d.objoid = f.oid AND d.classoid = 'pg_proc'::regclass),
    'triggers', (
      SELECT json_agg(json_build_object(
               'table', migsafe._key(r.nspname, r.relname), 'name', tg.tgname,
               'definition', pg_get_triggerdef(tg.oid),
               'enabled', tg.tgenabled,
               'inherited', tg.tgparentid <> 0,
               'comment', d.description))
        FROM pg_trigger tg
        JOIN rel r ON r.oid = tg.tgrelid
        LEFT JOIN pg_description d ON d.objoid = tg.oid AND d.classoid = 'pg_trigger'::regclass
       WHERE NOT tg.tgisinternal),
    'policies', (
      SELECT json_agg(json_build_object(
               'table', migsafe._key(r.nspname, r.relname), 'name', p.polname,
               'permissive', p.polpermissive,
               'command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                        WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
               'roles', ARRAY(SELECT CASE WHEN ro = 0 THEN 'public' ELSE pg_get_userbyid(ro)::text END
                                FROM unnest(p.polroles) ro ORDER BY 1),
               'using', pg_get_expr(p.polqual, p.polrelid),
               'with_check', pg_get_expr(p.polwithcheck, p.polrelid),
               'comment', d.description))
        FROM pg_policy p
        JOIN rel r ON r.oid = p.polrelid
        LEFT JOIN pg_description d ON d.objoid = p.oid AND d.classoid = 'pg_policy'::regclass)
  )
  INTO doc;
  RETURN doc;
END
$fn$;

CREATE TABLE migsafe.snapshot (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  taken_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  label     text,
  kind      text        NOT NULL CHECK (kind IN ('manual', 'auto')),
  taken_by  name        NOT NULL DEFAULT session_user,
  xid       xid8        NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
  complete  boolean     NOT NULL
);

-- A snapshot is the union of its parts: a full snapshot has one part with a NULL
-- scope, an automatic one a part per statement that reached something new.
CREATE TABLE migsafe.snapshot_part (
  snapshot_id bigint  NOT NULL REFERENCES migsafe.snapshot (id) ON DELETE CASCADE,
  part        int     NOT NULL,
  scope       jsonb,
  doc         json    NOT NULL,
  PRIMARY KEY (snapshot_id, part)
);

-- The documents (snapshot_part.doc) are read through diff(), rollback_sql() and
-- verify(), which leave out what the caller could not read directly (sequence
-- positions): nobody reads the table itself.
REVOKE ALL ON migsafe.snapshot, migsafe.snapshot_part FROM PUBLIC;
GRANT SELECT ON migsafe.snapshot TO migsafe_admin, migsafe_auditor;

CREATE VIEW migsafe.snapshots AS
SELECT s.id, s.taken_at, s.label, s.kind, s.taken_by, s.complete,
       (SELECT count(*) FROM migsafe.snapshot_part p WHERE p.snapshot_id = s.id)::int AS parts,
       (SELECT pg_catalog.array_agg(DISTINCT x ORDER BY x)
          FROM migsafe.snapshot_part p,
               LATERAL (SELECT e->>0 || '.' || (e->>1) AS x FROM pg_catalog.jsonb_array_elements(coalesce(p.scope->'relations', '[]')) e
                        UNION ALL SELECT pg_catalog.jsonb_array_elements_text(coalesce(p.scope->'contents', '[]'))) o
         WHERE p.snapshot_id = s.id) AS covers,
       (SELECT sum(pg_catalog.pg_column_size(p.doc)) FROM migsafe.snapshot_part p WHERE p.snapshot_id = s.id)::bigint AS bytes
  FROM migsafe.snapshot s;

REVOKE ALL ON migsafe.snapshots FROM PUBLIC;
GRANT SELECT ON migsafe.snapshots TO migsafe_admin, migsafe_approver, migsafe_auditor;

-- A full snapshot of the database's schema; returns its id.
CREATE FUNCTION migsafe.snapshot(label text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  new_id bigint;
BEGIN
  PERFORM migsafe._require_primary('migsafe.snapshot()');
  PERFORM migsafe._require_approver('take snapshots');
  -- Ids come from pg_migsafe's counter (as the automatic snapshots' do), not from the
  -- identity sequence: see migsafe._next_snapshot_id().
  INSERT INTO migsafe.snapshot (id, label, kind, complete) OVERRIDING SYSTEM VALUE
  VALUES (migsafe._next_snapshot_id(), nullif(btrim(label), ''), 'manual', true)
  RETURNING id INTO new_id;
  INSERT INTO migsafe.snapshot_part (snapshot_id, part, scope, doc)
  VALUES (new_id, 1, NULL, migsafe._catalog(NULL));
  RETURN new_id;
END
$$;

-- Stores an automatic snapshot when its migration commits: the parts the hook read
-- before the migration's DDL statements (scope NULL: everything). Written at commit,
-- not when read, so that nothing of it shows in the migration's own session (its
-- locks, a read-only transaction's error). Returns the id used: the one given, or the
-- next free one should restored data have taken it.
CREATE FUNCTION migsafe._snapshot_store(snapshot_id bigint, taken_at timestamptz, scopes jsonb[], docs jsonb[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  sid bigint := snapshot_id;
BEGIN
  IF EXISTS (SELECT 1 FROM migsafe.snapshot s WHERE s.id = sid) THEN
    SELECT max(s.id) + 1 INTO sid FROM migsafe.snapshot s;
  END IF;
  INSERT INTO migsafe.snapshot (id, taken_at, kind, complete) OVERRIDING SYSTEM VALUE
  VALUES (sid, taken_at, 'auto', array_position(scopes, NULL) IS NOT NULL);
  INSERT INTO migsafe.snapshot_part (snapshot_id, part, scope, doc)
  SELECT sid, p.n, p.scope, p.doc FROM unnest(scopes, docs) WITH ORDINALITY AS p(scope, doc, n);
  RETURN sid;
END
$$;

-- Deletes snapshots (and their parts); returns how many.
CREATE FUNCTION migsafe.drop_snapshots(older_than interval) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n bigint;
BEGIN
  PERFORM migsafe._require_primary('migsafe.drop_snapshots()');
  IF NOT migsafe._holds_role(session_user, 'migsafe_admin') THEN
    RAISE EXCEPTION 'role "%" may not drop snapshots', session_user
      USING ERRCODE = '42501', HINT = 'A superuser or a member of migsafe_admin (granted by a superuser) does.';
  END IF;
  IF older_than IS NULL OR older_than < interval '0' THEN
    RAISE EXCEPTION 'older_than must be an interval of zero or more, not %', coalesce(older_than::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  DELETE FROM migsafe.snapshot s WHERE s.taken_at < clock_timestamp() - older_than;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

REVOKE ALL ON FUNCTION migsafe._catalog(jsonb),
  migsafe._snapshot_store(bigint, timestamptz, jsonb[], jsonb[]), migsafe._next_snapshot_id(),
  migsafe.snapshot(text), migsafe.drop_snapshots(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION migsafe.snapshot(text) TO migsafe_admin, migsafe_approver;
GRANT EXECUTE ON FUNCTION migsafe.drop_snapshots(interval) TO migsafe_admin;
