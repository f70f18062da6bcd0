//! The rule catalog: one entry per hazard, as data.
//!
//! The same entries drive the hook's refusals and warnings, `migsafe.check()`,
//! `migsafe.rules()`, `docs/rules.md` and the per-rule integration tests (which run
//! `setup`, then `bad` — expecting this rule — then `good` — expecting it not to fire).

use serde::Serialize;

/// How bad a finding is. The policy (see `policy.rs`) turns it into a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Safe,
    Risky,
    Destructive,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Safe => "safe",
            Severity::Risky => "risky",
            Severity::Destructive => "destructive",
        }
    }
}

/// What the statement does to the table's data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableWork {
    /// Catalog-only change.
    None,
    /// Reads every row (validation) while holding the lock.
    Scan,
    /// Writes a new copy of the table (and its indexes).
    Rewrite,
    /// Builds an index.
    Build,
}

impl TableWork {
    pub fn as_str(self) -> &'static str {
        match self {
            TableWork::None => "none",
            TableWork::Scan => "full scan",
            TableWork::Rewrite => "table rewrite",
            TableWork::Build => "index build",
        }
    }
    /// The `rewrites` column of `migsafe.check()`: the statement touches every row.
    pub fn touches_rows(self) -> bool {
        !matches!(self, TableWork::None)
    }
}

/// Declares `RuleId`: one variant per catalog entry, with its stable kebab-case id. A
/// rule is named in code by its variant, so a misspelt rule does not compile; the
/// catalog test checks that every variant has exactly one entry in `RULES`.
macro_rules! rule_ids {
    ($($variant:ident => $id:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RuleId {
            $($variant,)*
        }

        impl RuleId {
            /// Every rule id, in catalog order.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];

            /// The stable id used in messages, `migsafe.disabled_rules`, the audit log
            /// and the docs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(RuleId::$variant => $id,)*
                }
            }

            /// The id a user wrote (`migsafe.disabled_rules`, `migsafe.rules()`).
            pub fn parse(id: &str) -> Option<RuleId> {
                match id {
                    $($id => Some(RuleId::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

rule_ids! {
    DropTable => "drop-table",
    DropColumn => "drop-column",
    DropSchema => "drop-schema",
    DropSequence => "drop-sequence",
    DropView => "drop-view",
    DropMaterializedView => "drop-materialized-view",
    DropType => "drop-type",
    DropDomain => "drop-domain",
    DropFunction => "drop-function",
    DropTrigger => "drop-trigger",
    DropRule => "drop-rule",
    DropPolicy => "drop-policy",
    DropPublication => "drop-publication",
    DropDatabase => "drop-database",
    DropExtension => "drop-extension",
    DropRole => "drop-role",
    DropObject => "drop-object",
    DropCascade => "drop-cascade",
    DropOwned => "drop-owned",
    Truncate => "truncate",
    RenameTable => "rename-table",
    RenameColumn => "rename-column",
    RenameSchema => "rename-schema",
    RenameEnumValue => "rename-enum-value",
    RenameObject => "rename-object",
    SetSchema => "set-schema",
    AlterColumnTypeLossy => "alter-column-type-lossy",
    DropNotNull => "drop-not-null",
    DropDefault => "drop-default",
    DropIdentity => "drop-identity",
    DropConstraint => "drop-constraint",
    DropReplicaIdentity => "drop-replica-identity",
    SetUnlogged => "set-unlogged",
    DetachPartition => "detach-partition",
    AttachUnderStanding => "attach-under-standing-approval",
    NoInherit => "no-inherit",
    AlterSequenceRestart => "alter-sequence-restart",
    DisableRls => "disable-rls",
    CreateIndex => "create-index",
    DropIndex => "drop-index",
    Reindex => "reindex",
    AddForeignKey => "add-foreign-key",
    AddCheckConstraint => "add-check-constraint",
    AddUniqueConstraint => "add-unique-constraint",
    SetNotNull => "set-not-null",
    AlterColumnTypeRewrite => "alter-column-type-rewrite",
    AddColumnVolatileDefault => "add-column-volatile-default",
    AddColumnGenerated => "add-column-generated",
    AddColumnNotNull => "add-column-not-null",
    VacuumFull => "vacuum-full",
    Cluster => "cluster",
    RefreshMatview => "refresh-matview",
    SetTablespace => "set-tablespace",
    SetLogged => "set-logged",
    SetAccessMethod => "set-access-method",
    AttachPartition => "attach-partition",
    AlterTriggerState => "alter-trigger-state",
    CreateRule => "create-rule",
    EnableRlsWithoutPolicy => "enable-rls-without-policy",
    RevokePrivileges => "revoke-privileges",
    AlterSequenceLimits => "alter-sequence-limits",
    InvalidIndexExists => "invalid-index-exists",
    ReplicaIdentity => "replica-identity",
    DmlWithoutWhere => "dml-without-where",
    OpaqueCode => "opaque-code",
    LockTable => "lock-table",
    WideLockWindow => "wide-lock-window",
    NotInTransaction => "not-in-transaction",
    BackfillUnderLock => "backfill-under-lock",
    EnumValueUsedBeforeCommit => "enum-value-used-before-commit",
    ProtectExtension => "protect-extension",
    ProtectSchema => "protect-schema",
    ProtectSettings => "protect-settings",
}

/// One entry of the catalog.
#[derive(Debug, Serialize, PartialEq)]
pub struct Rule {
    /// Which rule; `id.as_str()` is the stable kebab-case id of messages, settings and docs.
    pub id: RuleId,
    pub severity: Severity,
    /// Self-protection rule: refused in `enforce` and `warn`, only `off` lets it pass,
    /// and it cannot be listed in `migsafe.disabled_rules`.
    pub protects_extension: bool,
    /// Reported by `migsafe.check()` only: the hook never sees this statement kind.
    pub check_only: bool,
    /// Strongest lock the statement takes (verified against `pg_locks` by the tests).
    pub lock: &'static str,
    pub work: TableWork,
    pub data_loss: bool,
    /// Short title, used as the heading in docs/rules.md.
    pub title: &'static str,
    /// Why it is dangerous; completes "<rule> on <object>: ...".
    pub message: &'static str,
    /// The safe way to get the same result (the HINT of the error).
    pub safe_alternative: &'static str,
    /// SQL that creates what the examples need, committed before they run.
    pub setup: &'static str,
    /// A statement this rule fires on, given `setup`.
    pub bad: &'static str,
    /// The safe counterpart; this rule does not fire on it.
    pub good: &'static str,
}

const AE: &str = "ACCESS EXCLUSIVE";
const SRE: &str = "SHARE ROW EXCLUSIVE";
const SHARE: &str = "SHARE";
const NO_TABLE_LOCK: &str = "none";

const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email varchar(200) NOT NULL, \
legacy_email text DEFAULT '', name varchar(100), score numeric(10,2), age int);\n\
INSERT INTO users VALUES (1, 'ann@example.com', 'ann@old.example', 'Ann', 12.50, 30);";

const USERS_ORDERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n\
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, total numeric(12,2));\n\
INSERT INTO users VALUES (1, 'ann@example.com');\n\
INSERT INTO orders VALUES (10, 1, 99.90);";

macro_rules! rule {
    ($id:ident, $sev:ident, $lock:expr, $work:ident, $loss:literal, $title:literal,
     $msg:literal, $alt:literal, $setup:expr, $bad:literal, $good:literal) => {
        Rule {
            id: RuleId::$id,
            severity: Severity::$sev,
            protects_extension: false,
            check_only: false,
            lock: $lock,
            work: TableWork::$work,
            data_loss: $loss,
            title: $title,
            message: $msg,
            safe_alternative: $alt,
            setup: $setup,
            bad: $bad,
            good: $good,
        }
    };
}

/// The whole catalog, in documentation order.
pub static RULES: &[Rule] = &[
    // ---------------------------------------------------------------- destructive
    rule!(DropTable, Destructive, AE, None, true,
        "DROP TABLE",
        "dropping a table destroys its rows and breaks every client that still uses it",
        "Stop using the table first (expand), then drop it in an approved contract phase once no deployed code reads it.",
        USERS,
        "DROP TABLE users;",
        "COMMENT ON TABLE users IS 'deprecated: drop in a contract phase';"),
    rule!(DropColumn, Destructive, AE, None, true,
        "ALTER TABLE … DROP COLUMN",
        "dropping a column destroys its values and breaks clients that still read or write it",
        "Deploy code that no longer reads or writes the column, then drop it in an approved contract phase.",
        USERS,
        "ALTER TABLE users DROP COLUMN legacy_email;",
        "COMMENT ON COLUMN users.legacy_email IS 'deprecated: drop in a contract phase';"),
    rule!(DropSchema, Destructive, AE, None, true,
        "DROP SCHEMA",
        "dropping a schema removes it and, with CASCADE, everything in it",
        "Move or drop the objects one by one in a contract phase; drop the empty schema last.",
        "CREATE SCHEMA reporting;",
        "DROP SCHEMA reporting;",
        "COMMENT ON SCHEMA reporting IS 'deprecated';"),
    rule!(DropSequence, Destructive, AE, None, true,
        "DROP SEQUENCE",
        "dropping a sequence loses its current value; defaults using it start failing",
        "Remove the defaults that use it first, then drop it in a contract phase.",
        "CREATE SEQUENCE invoice_no START 1000;\nSELECT nextval('invoice_no');",
        "DROP SEQUENCE invoice_no;",
        "ALTER SEQUENCE invoice_no INCREMENT BY 1;"),
    rule!(DropView, Destructive, AE, None, false,
        "DROP VIEW",
        "dropping a view breaks every client and report that queries it",
        "Replace the view's definition (CREATE OR REPLACE VIEW) or drop it in a contract phase once unused.",
        "CREATE TABLE users (id int, email text);\nCREATE VIEW active_users AS SELECT id, email FROM users;",
        "DROP VIEW active_users;",
        "CREATE OR REPLACE VIEW active_users AS SELECT id, email FROM users WHERE id > 0;"),
    rule!(DropMaterializedView, Destructive, AE, None, true,
        "DROP MATERIALIZED VIEW",
        "dropping a materialized view loses its stored rows and breaks clients that query it",
        "Drop it in a contract phase once no client reads it.",
        "CREATE TABLE users (id int);\nCREATE MATERIALIZED VIEW user_count AS SELECT count(*) AS n FROM users;",
        "DROP MATERIALIZED VIEW user_count;",
        "COMMENT ON MATERIALIZED VIEW user_count IS 'deprecated: drop in a contract phase';"),
    rule!(DropType, Destructive, AE, None, true,
        "DROP TYPE",
        "dropping a type breaks functions and, with CASCADE, drops the columns that use it",
        "Migrate the columns to another type first, then drop the type in a contract phase.",
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');",
        "DROP TYPE mood;",
        "ALTER TYPE mood ADD VALUE 'ecstatic';"),
    rule!(DropDomain, Destructive, AE, None, true,
        "DROP DOMAIN",
        "dropping a domain breaks functions and, with CASCADE, drops the columns that use it",
        "Migrate the columns to the base type first, then drop the domain in a contract phase.",
        "CREATE DOMAIN email_address AS text CHECK (VALUE LIKE '%@%');",
        "DROP DOMAIN email_address;",
        "COMMENT ON DOMAIN email_address IS 'deprecated';"),
    rule!(DropFunction, Destructive, AE, None, false,
        "DROP FUNCTION / PROCEDURE / AGGREGATE / ROUTINE",
        "dropping a routine breaks every caller, trigger and default that uses it",
        "Replace its body with CREATE OR REPLACE, or drop it in a contract phase once no caller is left.",
        "CREATE FUNCTION add_tax(numeric) RETURNS numeric LANGUAGE sql AS 'SELECT $1 * 1.2';",
        "DROP FUNCTION add_tax(numeric);",
        "CREATE OR REPLACE FUNCTION add_tax(numeric) RETURNS numeric LANGUAGE sql AS 'SELECT $1 * 1.25';"),
    rule!(DropTrigger, Destructive, AE, None, false,
        "DROP TRIGGER",
        "dropping a trigger silently removes behaviour (auditing, derived columns, integrity) that writers rely on",
        "Drop it in a contract phase once the behaviour is no longer needed, or replace it (CREATE OR REPLACE TRIGGER).",
        "CREATE TABLE users (id int, updated_at timestamptz);\nCREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.updated_at := now(); RETURN NEW; END$$;\nCREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();",
        "DROP TRIGGER users_touch ON users;",
        "COMMENT ON TRIGGER users_touch ON users IS 'keeps updated_at current';"),
    rule!(DropRule, Destructive, AE, None, false,
        "DROP RULE",
        "dropping a rewrite rule silently changes what writes to the table do",
        "Drop it in a contract phase once the behaviour is no longer needed.",
        "CREATE TABLE events (id int);\nCREATE RULE events_no_delete AS ON DELETE TO events DO INSTEAD NOTHING;",
        "DROP RULE events_no_delete ON events;",
        "COMMENT ON RULE events_no_delete ON events IS 'events are append-only';"),
    rule!(DropPolicy, Destructive, AE, None, false,
        "DROP POLICY",
        "dropping a row-level security policy changes who can see or change which rows: a security change",
        "Create the replacement policy first, then drop the old one in an approved contract phase.",
        "CREATE TABLE docs (id int, owner name);\nALTER TABLE docs ENABLE ROW LEVEL SECURITY;\nCREATE POLICY docs_owner ON docs USING (owner = current_user);",
        "DROP POLICY docs_owner ON docs;",
        "CREATE POLICY docs_owner_read ON docs FOR SELECT USING (owner = current_user);"),
    rule!(DropPublication, Destructive, NO_TABLE_LOCK, None, false,
        "DROP PUBLICATION",
        "dropping a publication stops logical replication to every subscriber",
        "Detach the subscribers first, then drop it in a contract phase.",
        "CREATE TABLE users (id int PRIMARY KEY);\nCREATE PUBLICATION users_pub FOR TABLE users;",
        "DROP PUBLICATION users_pub;",
        "COMMENT ON PUBLICATION users_pub IS 'feeds the warehouse';"),
    rule!(DropDatabase, Destructive, NO_TABLE_LOCK, None, true,
        "DROP DATABASE",
        "dropping a database destroys all of its data",
        "Take and verify a backup, then drop it with pg_migsafe switched off by a DBA in the server configuration.",
        "CREATE DATABASE scratch_analytics;",
        "DROP DATABASE scratch_analytics;",
        "ALTER DATABASE scratch_analytics CONNECTION LIMIT 10;"),
    rule!(DropExtension, Destructive, AE, None, true,
        "DROP EXTENSION",
        "dropping an extension drops its objects (types, functions, tables) and with CASCADE the columns that use them",
        "Remove the uses of the extension's objects first, then drop it in a contract phase.",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;",
        "DROP EXTENSION pg_trgm;",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;"),
    rule!(DropRole, Destructive, NO_TABLE_LOCK, None, false,
        "DROP ROLE / DROP USER",
        "dropping a role locks out every application and person that logs in with it",
        "Revoke LOGIN first (ALTER ROLE … NOLOGIN), watch for failures, then drop it in a contract phase.",
        "CREATE ROLE report_reader LOGIN;",
        "DROP ROLE report_reader;",
        "ALTER ROLE report_reader NOLOGIN;"),
    rule!(DropObject, Destructive, AE, None, false,
        "DROP of any other persistent object",
        "dropping it breaks whatever depends on it (foreign tables, servers, collations, operators, casts, event triggers, tablespaces, subscriptions, statistics…)",
        "Remove its uses first, then drop it in a contract phase.",
        "CREATE COLLATION byte_order (provider = libc, locale = 'C');",
        "DROP COLLATION byte_order;",
        "COMMENT ON COLLATION byte_order IS 'sorts by bytes';"),
    rule!(DropCascade, Destructive, AE, None, true,
        "DROP … CASCADE that takes other objects with it",
        "the CASCADE also drops every object that depends on it (listed in DETAIL)",
        "Drop the dependent objects explicitly, each in its own reviewed step, then drop the object without CASCADE.",
        "CREATE TABLE users (id int PRIMARY KEY, email text);\nCREATE VIEW user_emails AS SELECT email FROM users;",
        "DROP TABLE users CASCADE;",
        "CREATE TABLE import_batch (id int);\nCREATE VIEW import_batch_ids AS SELECT id FROM import_batch;\nDROP TABLE import_batch CASCADE;"),
    rule!(DropOwned, Destructive, AE, None, true,
        "DROP OWNED BY",
        "drops every object the role owns in this database, whatever it is",
        "Reassign the objects to another role first (REASSIGN OWNED BY … TO …).",
        "CREATE ROLE legacy_app;\nCREATE TABLE legacy_data (id int);\nALTER TABLE legacy_data OWNER TO legacy_app;",
        "DROP OWNED BY legacy_app;",
        "REASSIGN OWNED BY legacy_app TO CURRENT_USER;"),
    rule!(Truncate, Destructive, AE, None, true,
        "TRUNCATE",
        "truncating deletes every row at once, with no WHERE and no way back after commit",
        "Delete the rows you mean to delete in reviewed batches (DELETE … WHERE …), after keeping a copy.",
        USERS_ORDERS,
        "TRUNCATE orders;",
        "DELETE FROM orders WHERE id = 10;"),
    rule!(RenameTable, Destructive, AE, None, false,
        "RENAME of a table, view, materialized view, sequence or foreign table",
        "renaming breaks every running client that uses the old name",
        "Create the new name alongside (a view under the old name, or a new table with dual writes and a backfill), switch the clients, then drop the old one in a contract phase.",
        USERS,
        "ALTER TABLE users RENAME TO customers;",
        "CREATE VIEW customers AS SELECT * FROM users;"),
    rule!(RenameColumn, Destructive, AE, None, false,
        "ALTER TABLE … RENAME COLUMN",
        "renaming a column breaks every running client that uses the old name",
        "Add the new column, write both, backfill, switch the readers, then drop the old column in a contract phase.",
        USERS,
        "ALTER TABLE users RENAME COLUMN name TO full_name;",
        "ALTER TABLE users ADD COLUMN full_name varchar(100);"),
    rule!(RenameSchema, Destructive, AE, None, false,
        "ALTER SCHEMA … RENAME",
        "renaming a schema breaks every client and search_path that names it",
        "Create the new schema and move objects gradually; drop the old one in a contract phase.",
        "CREATE SCHEMA reporting;",
        "ALTER SCHEMA reporting RENAME TO analytics;",
        "CREATE SCHEMA analytics;"),
    rule!(RenameEnumValue, Destructive, AE, None, false,
        "ALTER TYPE … RENAME VALUE",
        "renaming an enum label breaks clients that still send or compare the old label",
        "Add the new label (ADD VALUE), migrate rows and clients, and stop using the old label.",
        "CREATE TYPE order_status AS ENUM ('new', 'shipped');",
        "ALTER TYPE order_status RENAME VALUE 'shipped' TO 'sent';",
        "ALTER TYPE order_status ADD VALUE 'sent';"),
    rule!(RenameObject, Destructive, AE, None, false,
        "RENAME of a type, domain, function, procedure, database, role or other named object",
        "renaming breaks every client, function and connection string that uses the old name",
        "Create the object under the new name alongside the old one, switch the users, drop the old one in a contract phase.",
        "CREATE FUNCTION add_tax(numeric) RETURNS numeric LANGUAGE sql AS 'SELECT $1 * 1.2';",
        "ALTER FUNCTION add_tax(numeric) RENAME TO add_vat;",
        "CREATE FUNCTION add_vat(numeric) RETURNS numeric LANGUAGE sql AS 'SELECT $1 * 1.2';"),
    rule!(SetSchema, Destructive, AE, None, false,
        "ALTER … SET SCHEMA",
        "moving an object to another schema changes its qualified name and breaks clients that use the old one",
        "Create the object in the new schema alongside, switch the clients, then drop the old one in a contract phase.",
        "CREATE SCHEMA archive;\nCREATE TABLE invoices (id int);",
        "ALTER TABLE invoices SET SCHEMA archive;",
        "CREATE VIEW archive.invoices AS SELECT * FROM public.invoices;"),
    rule!(AlterColumnTypeLossy, Destructive, AE, Rewrite, true,
        "Lossy ALTER COLUMN TYPE",
        "the new type cannot hold every old value: values are truncated, rounded or the statement fails on existing rows",
        "Add a new column of the new type, backfill it with an explicit conversion you have checked (e.g. max(length(col))), switch the clients, then drop the old column in a contract phase.",
        USERS,
        "ALTER TABLE users ALTER COLUMN email TYPE varchar(50);",
        "ALTER TABLE users ALTER COLUMN email TYPE varchar(320);"),
    rule!(DropNotNull, Destructive, AE, None, false,
        "ALTER COLUMN … DROP NOT NULL",
        "dropping NOT NULL lets NULLs in, which clients that rely on the guarantee do not expect",
        "Change every reader to handle NULL first, then drop the constraint in a contract phase.",
        USERS,
        "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;",
        "ALTER TABLE users ALTER COLUMN name SET DEFAULT 'unknown';"),
    rule!(DropDefault, Destructive, AE, None, false,
        "ALTER COLUMN … DROP DEFAULT",
        "dropping a default makes inserts that omit the column store NULL or fail",
        "Change every writer to supply the value first, then drop the default in a contract phase.",
        USERS,
        "ALTER TABLE users ALTER COLUMN legacy_email DROP DEFAULT;",
        "ALTER TABLE users ALTER COLUMN legacy_email SET DEFAULT 'none';"),
    rule!(DropIdentity, Destructive, AE, None, false,
        "ALTER COLUMN … DROP IDENTITY",
        "dropping an identity makes inserts that omit the column fail and drops its sequence (its current value is lost)",
        "Give the column an explicit default from a new sequence first, then drop the identity in a contract phase.",
        "CREATE TABLE tickets (id int GENERATED BY DEFAULT AS IDENTITY, title text);\nINSERT INTO tickets (title) VALUES ('first');",
        "ALTER TABLE tickets ALTER COLUMN id DROP IDENTITY;",
        "ALTER TABLE tickets ALTER COLUMN id SET GENERATED ALWAYS;"),
    rule!(DropConstraint, Destructive, AE, None, false,
        "DROP CONSTRAINT",
        "dropping a constraint removes a guarantee (uniqueness, a check, referential integrity) that data and clients rely on",
        "Drop it in an approved contract phase; to replace a constraint, add the new one (NOT VALID, then VALIDATE) before dropping the old one.",
        "CREATE TABLE users (id int PRIMARY KEY, age int CONSTRAINT users_age_check CHECK (age >= 0));",
        "ALTER TABLE users DROP CONSTRAINT users_age_check;",
        "ALTER TABLE users ADD CONSTRAINT users_age_max CHECK (age < 200) NOT VALID;"),
    rule!(DropReplicaIdentity, Destructive, AE, None, false,
        "Dropping the replica identity of a published table",
        "without its replica identity (the primary key, or the REPLICA IDENTITY USING INDEX index), UPDATE and DELETE on a table that a publication sends fail for every client",
        "Give the table another replica identity first (a new primary key or unique index, then REPLICA IDENTITY USING INDEX), then drop the old one in a contract phase.",
        "CREATE TABLE users (id bigint CONSTRAINT users_pkey PRIMARY KEY, email text);\nINSERT INTO users VALUES (1, 'ann@example.com');\nCREATE PUBLICATION users_pub FOR TABLE users;",
        "ALTER TABLE users DROP CONSTRAINT users_pkey;",
        "ALTER TABLE users ADD COLUMN nick text;"),
    rule!(SetUnlogged, Destructive, AE, Rewrite, true,
        "ALTER TABLE … SET UNLOGGED",
        "an unlogged table is emptied after a crash and is not replicated to standbys",
        "Keep the table logged; use a separate unlogged staging table for data you can afford to lose.",
        "CREATE TABLE sessions (id int, data text);\nINSERT INTO sessions VALUES (1, 'x');",
        "ALTER TABLE sessions SET UNLOGGED;",
        "CREATE UNLOGGED TABLE sessions_staging (id int, data text);"),
    rule!(DetachPartition, Destructive, AE, None, true,
        "ALTER TABLE … DETACH PARTITION",
        "detaching a partition makes its rows vanish from the partitioned table for every client",
        "Detach in a contract phase after checking that no query needs those rows (use DETACH PARTITION … CONCURRENTLY to avoid the lock).",
        "CREATE TABLE measurements (at date NOT NULL, v int) PARTITION BY RANGE (at);\nCREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\nINSERT INTO measurements VALUES ('2025-06-01', 1);",
        "ALTER TABLE measurements DETACH PARTITION measurements_2025;",
        "CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"),
    rule!(AttachUnderStanding, Destructive, AE, None, false,
        "ALTER TABLE … ATTACH PARTITION of an existing table into a table under a standing approval",
        "a standing approval lets its role drop the old partitions of that table: an existing table attached with an old range could then be dropped with no one approving that drop",
        "Create partitions as partitions (CREATE TABLE … PARTITION OF, or CREATE TABLE and ATTACH in the same transaction, as pg_partman does); attach an existing table in a contract phase that lists it.",
        "CREATE TABLE measurements (at date NOT NULL, v int) PARTITION BY RANGE (at);\nCREATE TABLE ledger (at date NOT NULL, v int);\nINSERT INTO ledger VALUES ('1999-06-01', 1);\nSELECT migsafe.grant_standing_approval('measurements-retention', current_user, 'public.measurements', '1 year');",
        "ALTER TABLE measurements ATTACH PARTITION ledger FOR VALUES FROM ('1999-01-01') TO ('2000-01-01');",
        "CREATE TABLE measurements_1999 PARTITION OF measurements FOR VALUES FROM ('1999-01-01') TO ('2000-01-01');"),
    rule!(NoInherit, Destructive, AE, None, true,
        "ALTER TABLE … NO INHERIT",
        "removing inheritance makes the child's rows vanish from queries on the parent",
        "Do it in a contract phase after checking that no query on the parent needs the child's rows.",
        "CREATE TABLE logs (at timestamptz, msg text);\nCREATE TABLE logs_old () INHERITS (logs);\nINSERT INTO logs_old VALUES (now(), 'x');",
        "ALTER TABLE logs_old NO INHERIT logs;",
        "CREATE TABLE logs_new () INHERITS (logs);"),
    rule!(AlterSequenceRestart, Destructive, SRE, None, true,
        "ALTER SEQUENCE … RESTART",
        "restarting a sequence makes it hand out values again that rows already use: duplicate keys",
        "Only ever move a sequence forward (setval to a value above the column's max), after checking max(id).",
        "CREATE TABLE tickets (id serial PRIMARY KEY);\nINSERT INTO tickets DEFAULT VALUES;",
        "ALTER SEQUENCE tickets_id_seq RESTART WITH 1;",
        "ALTER SEQUENCE tickets_id_seq CACHE 1;"),
    rule!(DisableRls, Destructive, AE, None, false,
        "DISABLE / NO FORCE ROW LEVEL SECURITY",
        "turning row-level security off exposes every row to every role with table privileges: a security change",
        "Keep RLS on; change the policies instead (CREATE POLICY / ALTER POLICY) in a reviewed step.",
        "CREATE TABLE docs (id int, owner name);\nALTER TABLE docs ENABLE ROW LEVEL SECURITY;",
        "ALTER TABLE docs DISABLE ROW LEVEL SECURITY;",
        "CREATE POLICY docs_all ON docs USING (true);"),
    // ---------------------------------------------------------------- risky
    rule!(CreateIndex, Risky, SHARE, Build, false,
        "CREATE INDEX without CONCURRENTLY on an existing table",
        "building the index blocks every write to the table until it is done",
        "CREATE INDEX CONCURRENTLY (outside a transaction block), then check that the index is valid.",
        USERS,
        "CREATE INDEX users_name_idx ON users (name);",
        "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);"),
    rule!(DropIndex, Risky, AE, None, false,
        "DROP INDEX without CONCURRENTLY",
        "dropping an index locks the table against reads and writes, and queries or uniqueness that relied on it change",
        "DROP INDEX CONCURRENTLY (outside a transaction block), after building any replacement.",
        "CREATE TABLE users (id int, name text);\nCREATE INDEX users_name_idx ON users (name);",
        "DROP INDEX users_name_idx;",
        "DROP INDEX CONCURRENTLY users_name_idx;"),
    rule!(Reindex, Risky, AE, Build, false,
        "REINDEX without CONCURRENTLY",
        "rebuilding blocks writes to the table and reads through the index until it is done",
        "REINDEX … CONCURRENTLY (outside a transaction block).",
        "CREATE TABLE users (id int, name text);\nCREATE INDEX users_name_idx ON users (name);",
        "REINDEX INDEX users_name_idx;",
        "REINDEX INDEX CONCURRENTLY users_name_idx;"),
    rule!(AddForeignKey, Risky, SRE, Scan, false,
        "ADD FOREIGN KEY without NOT VALID",
        "validating the foreign key scans the table while blocking writes to both tables, and fails on orphan rows",
        "ADD CONSTRAINT … FOREIGN KEY … NOT VALID, then VALIDATE CONSTRAINT in a later transaction (it takes a weaker lock).",
        USERS_ORDERS,
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;"),
    rule!(AddCheckConstraint, Risky, AE, Scan, false,
        "ADD CHECK (or domain constraint) without NOT VALID",
        "validating the check scans every row under an ACCESS EXCLUSIVE lock, and fails on rows that violate it",
        "ADD CONSTRAINT … CHECK (…) NOT VALID, then VALIDATE CONSTRAINT in a later transaction.",
        USERS,
        "ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0);",
        "ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0) NOT VALID;"),
    rule!(AddUniqueConstraint, Risky, AE, Build, false,
        "ADD UNIQUE / PRIMARY KEY / EXCLUDE",
        "the constraint builds its index while blocking reads and writes, and fails on duplicates",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX (or PRIMARY KEY USING INDEX).",
        USERS,
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
        "CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);"),
    rule!(SetNotNull, Risky, AE, Scan, false,
        "ALTER COLUMN … SET NOT NULL (and PostgreSQL 18's ALTER CONSTRAINT … INHERIT on a table with children)",
        "SET NOT NULL scans every row under an ACCESS EXCLUSIVE lock and fails if a NULL exists",
        "ADD CONSTRAINT … CHECK (col IS NOT NULL) NOT VALID, VALIDATE it in a later transaction, then SET NOT NULL (no scan) and drop the check; on PostgreSQL 18, ADD CONSTRAINT … NOT NULL col NOT VALID, then VALIDATE CONSTRAINT.",
        USERS,
        "ALTER TABLE users ALTER COLUMN name SET NOT NULL;",
        "ALTER TABLE users ADD CONSTRAINT users_name_not_null CHECK (name IS NOT NULL) NOT VALID;"),
    rule!(AlterColumnTypeRewrite, Risky, AE, Rewrite, false,
        "ALTER COLUMN TYPE that rewrites the table",
        "the type change rewrites the table and its indexes under an ACCESS EXCLUSIVE lock",
        "Add a new column of the new type, backfill it in batches, switch the clients, then drop the old column in a contract phase.",
        USERS,
        "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
        "ALTER TABLE users ALTER COLUMN name TYPE varchar(200);"),
    rule!(AddColumnVolatileDefault, Risky, AE, Rewrite, false,
        "ADD COLUMN with a volatile default (or a constrained domain)",
        "a volatile default (random(), clock_timestamp(), gen_random_uuid(), nextval()) or a constrained domain rewrites the whole table under an ACCESS EXCLUSIVE lock",
        "Add the column without a default (or with a constant one), set the default afterwards, and backfill existing rows in batches.",
        USERS,
        "ALTER TABLE users ADD COLUMN token double precision DEFAULT random();",
        "ALTER TABLE users ADD COLUMN token double precision;"),
    rule!(AddColumnGenerated, Risky, AE, Rewrite, false,
        "ADD COLUMN … GENERATED … STORED / IDENTITY / serial",
        "a stored generated, identity or serial column is computed for every existing row: a full rewrite under an ACCESS EXCLUSIVE lock",
        "Add a plain nullable column, attach a sequence default or trigger, backfill in batches, then add constraints; on PostgreSQL 18, a VIRTUAL generated column (the default there) is computed when read and writes nothing.",
        USERS,
        "ALTER TABLE users ADD COLUMN email_domain text GENERATED ALWAYS AS (split_part(email, '@', 2)) STORED;",
        "ALTER TABLE users ADD COLUMN email_domain text;"),
    rule!(AddColumnNotNull, Risky, AE, Scan, false,
        "ADD COLUMN … NOT NULL without a default on a table with rows",
        "adding a NOT NULL column without a default fails on a table that has rows",
        "Add it with a constant DEFAULT, or nullable first, backfill, then enforce NOT NULL via a validated CHECK.",
        USERS,
        "ALTER TABLE users ADD COLUMN country text NOT NULL;",
        "ALTER TABLE users ADD COLUMN country text NOT NULL DEFAULT 'unknown';"),
    rule!(VacuumFull, Risky, AE, Rewrite, false,
        "VACUUM FULL",
        "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock: nothing can read or write it meanwhile",
        "Plain VACUUM, or pg_repack for an online rewrite.",
        USERS,
        "VACUUM FULL users;",
        "VACUUM users;"),
    rule!(Cluster, Risky, AE, Rewrite, false,
        "CLUSTER",
        "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock",
        "pg_repack with an ORDER BY, outside peak hours.",
        "CREATE TABLE users (id int PRIMARY KEY, name text);",
        "CLUSTER users USING users_pkey;",
        "ANALYZE users;"),
    rule!(RefreshMatview, Risky, AE, Rewrite, false,
        "REFRESH MATERIALIZED VIEW without CONCURRENTLY",
        "a plain refresh locks the view against reads until it is rebuilt",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view).",
        "CREATE TABLE users (id int);\nCREATE MATERIALIZED VIEW user_count AS SELECT 1 AS k, count(*) AS n FROM users;\nCREATE UNIQUE INDEX ON user_count (k);",
        "REFRESH MATERIALIZED VIEW user_count;",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY user_count;"),
    rule!(SetTablespace, Risky, AE, Rewrite, false,
        "ALTER TABLE / INDEX … SET TABLESPACE",
        "moving to another tablespace copies every block under an ACCESS EXCLUSIVE lock",
        "Create a new table in the target tablespace, copy in batches and switch; or pg_repack --tablespace.",
        USERS,
        "ALTER TABLE users SET TABLESPACE pg_default;",
        "ALTER TABLE users SET (fillfactor = 90);"),
    rule!(SetLogged, Risky, AE, Rewrite, false,
        "ALTER TABLE … SET LOGGED",
        "SET LOGGED writes the whole table to the WAL under an ACCESS EXCLUSIVE lock",
        "Create a logged copy and copy the rows in batches, or do it in a maintenance window.",
        "CREATE UNLOGGED TABLE staging (id int);",
        "ALTER TABLE staging SET LOGGED;",
        "CREATE TABLE staging_logged (id int);"),
    rule!(SetAccessMethod, Risky, AE, Rewrite, false,
        "ALTER TABLE … SET ACCESS METHOD",
        "changing the access method rewrites the table under an ACCESS EXCLUSIVE lock",
        "Create a new table with the access method, copy in batches and switch.",
        USERS,
        "ALTER TABLE users SET ACCESS METHOD heap;",
        "ALTER TABLE users SET (autovacuum_enabled = true);"),
    rule!(AttachPartition, Risky, AE, Scan, false,
        "ALTER TABLE … ATTACH PARTITION",
        "attaching scans the new partition to check its bounds unless it is empty or a matching CHECK constraint exists, and a populated default partition is scanned too (also by CREATE TABLE … PARTITION OF)",
        "Add a CHECK constraint matching the bounds (NOT VALID, then VALIDATE) before attaching; the attach then skips the scan.",
        "CREATE TABLE measurements (at date NOT NULL, v int) PARTITION BY RANGE (at);\nCREATE TABLE measurements_2025 (at date NOT NULL, v int);\nINSERT INTO measurements_2025 VALUES ('2025-03-01', 1);",
        "ALTER TABLE measurements ATTACH PARTITION measurements_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
        "ALTER TABLE measurements_2025 ADD CONSTRAINT m2025_bounds CHECK (at >= '2025-01-01' AND at < '2026-01-01') NOT VALID;"),
    rule!(AlterTriggerState, Risky, SRE, None, false,
        "DISABLE TRIGGER or RULE (or ENABLE REPLICA)",
        "a disabled trigger or rule (ENABLE REPLICA ones fire only under session_replication_role = replica) stops doing its work on every write; disabled FK triggers stop enforcing integrity",
        "Keep triggers enabled; change the trigger function instead, in a reviewed step.",
        "CREATE TABLE users (id int, updated_at timestamptz);\nCREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.updated_at := now(); RETURN NEW; END$$;\nCREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();",
        "ALTER TABLE users DISABLE TRIGGER users_touch;",
        "ALTER TABLE users ENABLE TRIGGER users_touch;"),
    rule!(CreateRule, Risky, AE, None, false,
        "CREATE RULE on an existing table",
        "a rule rewrites what queries on the table do (DO INSTEAD NOTHING silently discards them) for every client",
        "Use a trigger or a view, created in its own reviewed migration; keep rules off tables clients write.",
        USERS,
        "CREATE RULE users_keep AS ON DELETE TO users DO INSTEAD NOTHING;",
        "COMMENT ON TABLE users IS 'deletes are soft: see deleted_at';"),
    rule!(EnableRlsWithoutPolicy, Risky, AE, None, false,
        "ENABLE ROW LEVEL SECURITY on a table without a policy",
        "with row level security on and no policy, every role but the table's owner (and BYPASSRLS roles) reads and writes no rows",
        "Create the policies first (in this migration or an earlier one), then enable row level security.",
        USERS,
        "ALTER TABLE users ENABLE ROW LEVEL SECURITY;",
        "CREATE POLICY users_all ON users USING (true);"),
    rule!(RevokePrivileges, Risky, NO_TABLE_LOCK, None, false,
        "REVOKE on existing tables or sequences",
        "clients whose roles use the revoked privileges start failing with permission errors",
        "Check which roles the clients connect as (pg_stat_activity), move them to a role that keeps the privileges, then revoke.",
        "CREATE TABLE users (id int PRIMARY KEY, email text);\nGRANT SELECT ON users TO PUBLIC;",
        "REVOKE SELECT ON users FROM PUBLIC;",
        "GRANT SELECT ON users TO PUBLIC;"),
    rule!(AlterSequenceLimits, Risky, SRE, None, false,
        "ALTER SEQUENCE … AS / MAXVALUE / MINVALUE / CYCLE on a sequence in use",
        "a narrower type or a lower limit makes nextval fail once it is reached (or at once), and CYCLE makes it hand out used values again",
        "Only widen a sequence (AS bigint, NO MAXVALUE); never let a key's sequence cycle.",
        "CREATE TABLE tickets (id serial PRIMARY KEY);\nINSERT INTO tickets DEFAULT VALUES;",
        "ALTER SEQUENCE tickets_id_seq MAXVALUE 1000;",
        "ALTER SEQUENCE tickets_id_seq AS bigint NO MAXVALUE;"),
    rule!(InvalidIndexExists, Risky, NO_TABLE_LOCK, None, false,
        "CREATE INDEX IF NOT EXISTS where an INVALID index of that name exists",
        "the statement succeeds without building anything and leaves the INVALID index (a failed CONCURRENTLY build, an ON ONLY parent index) that no query can use",
        "Drop the invalid index (DROP INDEX CONCURRENTLY), then build it again; check pg_index.indisvalid afterwards.",
        "CREATE TABLE m (at date NOT NULL, v int) PARTITION BY RANGE (at);\nCREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\nCREATE INDEX m_v_idx ON ONLY m (v);",
        "CREATE INDEX IF NOT EXISTS m_v_idx ON m (v);",
        "CREATE INDEX IF NOT EXISTS m_2025_v_idx ON m_2025 (v);"),
    rule!(ReplicaIdentity, Risky, AE, None, false,
        "ALTER TABLE … REPLICA IDENTITY NOTHING or DEFAULT",
        "the replica identity decides what logical replication and CDC consumers receive of an UPDATE or DELETE; NOTHING makes them fail on a published table",
        "Coordinate with the consumers; change it in its own reviewed migration.",
        USERS,
        "ALTER TABLE users REPLICA IDENTITY NOTHING;",
        "ALTER TABLE users REPLICA IDENTITY FULL;"),
    Rule {
        id: RuleId::DmlWithoutWhere,
        severity: Severity::Risky,
        protects_extension: false,
        check_only: true,
        lock: "ROW EXCLUSIVE",
        work: TableWork::Scan,
        data_loss: true,
        title: "UPDATE / DELETE without WHERE in a migration",
        message: "an UPDATE or DELETE without WHERE touches every row of the table in one transaction",
        safe_alternative: "Batch the change with a WHERE clause on the key range, committing between batches.",
        setup: USERS,
        bad: "DELETE FROM users;",
        good: "DELETE FROM users WHERE id = 1;",
    },
    Rule {
        id: RuleId::OpaqueCode,
        severity: Severity::Risky,
        protects_extension: false,
        check_only: true,
        lock: NO_TABLE_LOCK,
        work: TableWork::None,
        data_loss: false,
        title: "A DO block",
        message: "check() cannot see what a DO block will run; the hook judges each statement it runs, but only when it runs",
        safe_alternative: "Write the statements out in the migration, or run it through migsafe.dry_run(), which executes the block and reports what it did.",
        setup: USERS,
        bad: "DO $$ BEGIN EXECUTE 'DROP TABLE users'; END $$;",
        good: "COMMENT ON TABLE users IS 'no DO blocks here';",
    },
    Rule {
        id: RuleId::LockTable,
        severity: Severity::Risky,
        protects_extension: false,
        check_only: true,
        lock: SHARE,
        work: TableWork::None,
        data_loss: false,
        title: "LOCK TABLE … IN SHARE MODE or stronger in a migration",
        message: "an explicit lock that blocks writes (SHARE and up) or reads (ACCESS EXCLUSIVE) is held until the migration commits",
        safe_alternative: "Take no explicit lock; let each statement take the lock it needs, with migsafe.lock_timeout to bound the wait.",
        setup: USERS,
        bad: "BEGIN;\nLOCK TABLE users IN SHARE MODE;\nCOMMIT;",
        good: "BEGIN;\nLOCK TABLE users IN ACCESS SHARE MODE;\nCOMMIT;",
    },
    Rule {
        id: RuleId::WideLockWindow,
        severity: Severity::Risky,
        protects_extension: false,
        check_only: true,
        lock: AE,
        work: TableWork::None,
        data_loss: false,
        title: "Three or more existing tables locked ACCESS EXCLUSIVE in one migration",
        message: "every ACCESS EXCLUSIVE lock is held until the migration commits; waiting for the next table while holding the others blocks the clients of all of them",
        safe_alternative: "Split the migration so that each transaction locks one table (a migration per table), with migsafe.lock_timeout to bound each wait.",
        setup: "CREATE TABLE users (id int PRIMARY KEY);\nCREATE TABLE orders (id int PRIMARY KEY);\nCREATE TABLE items (id int PRIMARY KEY);",
        bad: "ALTER TABLE users ADD COLUMN nick text;\nALTER TABLE orders ADD COLUMN note text;\nALTER TABLE items ADD COLUMN label text;",
        good: "ALTER TABLE users ADD COLUMN nick text;\nALTER TABLE orders ADD COLUMN note text;",
    },
    Rule {
        id: RuleId::NotInTransaction,
        severity: Severity::Risky,
        protects_extension: false,
        check_only: true,
        lock: NO_TABLE_LOCK,
        work: TableWork::None,
        data_loss: false,
        title: "A statement that cannot run in a transaction block, in a multi-statement migration",
        message: "PostgreSQL runs it only outside a transaction block, and a migration of several statements runs in one: Drizzle runs all pending files in one transaction, most runners each file, psql -1 the whole input; the migration fails there",
        safe_alternative: "Give it a migration of its own that the runner executes outside a transaction (Rails disable_ddl_transaction!, Django atomic = False, a separate psql call).",
        setup: USERS,
        bad: "ALTER TABLE users ADD COLUMN nick text;\nCREATE INDEX CONCURRENTLY users_nick_idx ON users (nick);",
        good: "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);",
    },
    Rule {
        id: RuleId::BackfillUnderLock,
        severity: Severity::Risky,
        protects_extension: false,
        check_only: true,
        lock: AE,
        work: TableWork::Scan,
        data_loss: false,
        title: "A backfill of a table an earlier statement of the migration locked ACCESS EXCLUSIVE",
        message: "the ACCESS EXCLUSIVE lock an earlier statement took is held until the migration commits, so every query on the table waits for the whole backfill",
        safe_alternative: "Commit the DDL first (a migration of its own), then backfill in batches of a few thousand rows, committing between them.",
        setup: USERS,
        bad: "ALTER TABLE users ADD COLUMN nick text;\nUPDATE users SET nick = lower(name);",
        good: "ALTER TABLE users ADD COLUMN nick text;",
    },
    Rule {
        id: RuleId::EnumValueUsedBeforeCommit,
        severity: Severity::Risky,
        protects_extension: false,
        check_only: true,
        lock: NO_TABLE_LOCK,
        work: TableWork::None,
        data_loss: false,
        title: "ALTER TYPE … ADD VALUE, then the new value used in the same migration",
        message: "PostgreSQL refuses to use an enum value before the transaction that added it commits (55P04 unsafe use of new value); a runner that runs the migration, or all pending ones as Drizzle does, in one transaction fails there",
        safe_alternative: "Add the value in a migration of its own, committed and deployed before any migration or code uses it.",
        setup: "CREATE TYPE mood AS ENUM ('sad', 'ok');\nCREATE TABLE people (id int PRIMARY KEY, m mood);\nINSERT INTO people VALUES (1, 'ok');",
        bad: "ALTER TYPE mood ADD VALUE 'happy';\nUPDATE people SET m = 'happy' WHERE id = 1;",
        good: "ALTER TYPE mood ADD VALUE 'happy';",
    },
    // ---------------------------------------------------------------- self-protection
    Rule {
        id: RuleId::ProtectExtension,
        severity: Severity::Destructive,
        protects_extension: true,
        check_only: false,
        lock: NO_TABLE_LOCK,
        work: TableWork::None,
        data_loss: true,
        title: "DROP or ALTER of the pg_migsafe extension",
        message: "pg_migsafe protects itself: DROP EXTENSION pg_migsafe and ALTER EXTENSION pg_migsafe (other than UPDATE) are refused",
        safe_alternative: "ALTER EXTENSION pg_migsafe UPDATE is allowed; to remove pg_migsafe a DBA sets migsafe.mode = 'off' in postgresql.conf and reloads first.",
        setup: "CREATE EXTENSION IF NOT EXISTS pg_migsafe;",
        bad: "DROP EXTENSION pg_migsafe;",
        good: "ALTER EXTENSION pg_migsafe UPDATE;",
    },
    Rule {
        id: RuleId::ProtectSchema,
        severity: Severity::Destructive,
        protects_extension: true,
        check_only: false,
        lock: NO_TABLE_LOCK,
        work: TableWork::None,
        data_loss: true,
        title: "DDL on objects in schema migsafe",
        message: "pg_migsafe protects itself: objects in schema migsafe can only be changed by the extension's own scripts",
        safe_alternative: "Use the functions pg_migsafe provides; GRANT and REVOKE on them are allowed.",
        setup: "CREATE EXTENSION IF NOT EXISTS pg_migsafe;",
        bad: "DROP FUNCTION migsafe.rules();",
        good: "GRANT EXECUTE ON FUNCTION migsafe.rules() TO PUBLIC;",
    },
    Rule {
        id: RuleId::ProtectSettings,
        severity: Severity::Destructive,
        protects_extension: true,
        check_only: false,
        lock: NO_TABLE_LOCK,
        work: TableWork::None,
        data_loss: false,
        title: "Changing migsafe.* settings (or unloading pg_migsafe) from SQL",
        message: "migsafe.* settings can only be changed in the server configuration file, and shared_preload_libraries must keep pg_migsafe",
        safe_alternative: "Edit postgresql.conf on the server and run SELECT pg_reload_conf(); see docs/configuration.md.",
        setup: "SELECT 1;",
        bad: "SET migsafe.mode = 'off';",
        good: "SHOW migsafe.mode;",
    },
];

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Rules that no longer exist, with the release that retired them and why. Their ids
/// are still accepted (and ignored) in `migsafe.disabled_rules`, so a configuration
/// written for an earlier release keeps working.
pub const RETIRED: &[(&str, &str, &str)] = &[
    (
        "rename-index",
        "0.4.0",
        "renaming an index breaks no client (an ALTER INDEX … RENAME that names a table is rename-table)",
    ),
    (
        "rename-constraint",
        "0.4.0",
        "constraint names are internal: renaming one breaks no client",
    ),
    (
        "create-trigger",
        "0.4.0",
        "a new trigger is how an expand phase keeps columns in step, and CREATE OR REPLACE TRIGGER swaps one atomically under a short lock",
    ),
];

/// Looks a rule up by the id a user wrote.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RuleId::parse(id).map(known)
}

/// The catalog entry of a rule (every `RuleId` has one: `every_id_has_one_entry`).
pub fn known(id: RuleId) -> &'static Rule {
    &RULES[id as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_id_has_one_entry_in_catalog_order() {
        // `known` indexes RULES by the variant: the orders must agree.
        assert_eq!(RULES.len(), RuleId::ALL.len());
        for (r, id) in RULES.iter().zip(RuleId::ALL) {
            assert_eq!(r.id, *id);
            assert_eq!(known(*id).id, *id);
            assert_eq!(rule(id.as_str()).map(|r| r.id), Some(*id));
        }
        assert!(rule("drop-tables").is_none() && rule("").is_none());
    }

    #[test]
    fn ids_are_unique_kebab_case() {
        let mut seen = HashSet::new();
        for r in RULES {
            let id = r.id.as_str();
            assert!(seen.insert(id), "duplicate rule id {id}");
            assert!(
                id.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    && !id.starts_with('-')
                    && !id.ends_with('-'),
                "{id} is not kebab-case"
            );
            assert!(id != "safe", "'safe' is reserved for check() rows");
        }
    }

    #[test]
    fn every_rule_is_complete() {
        for r in RULES {
            for (field, v) in [
                ("title", r.title),
                ("message", r.message),
                ("safe_alternative", r.safe_alternative),
                ("setup", r.setup),
                ("bad", r.bad),
                ("good", r.good),
                ("lock", r.lock),
            ] {
                assert!(!v.trim().is_empty(), "{}: empty {}", r.id, field);
            }
            assert_ne!(
                r.bad.trim(),
                r.good.trim(),
                "{}: bad and good are the same",
                r.id
            );
            assert_ne!(r.severity, Severity::Safe, "{}: a rule is never safe", r.id);
            assert!(
                !r.message.ends_with('.'),
                "{}: the message continues into the refusal sentence",
                r.id
            );
            assert!(
                r.safe_alternative.ends_with('.'),
                "{}: hint is a sentence",
                r.id
            );
        }
    }

    #[test]
    fn protection_rules_are_destructive() {
        for r in RULES.iter().filter(|r| r.protects_extension) {
            assert_eq!(r.severity, Severity::Destructive, "{}", r.id);
        }
    }

    #[test]
    fn issue_minimum_is_covered() {
        for id in [
            "drop-table",
            "drop-column",
            "drop-schema",
            "drop-sequence",
            "drop-view",
            "drop-materialized-view",
            "drop-type",
            "drop-domain",
            "drop-function",
            "drop-trigger",
            "drop-rule",
            "drop-policy",
            "drop-publication",
            "drop-database",
            "drop-cascade",
            "drop-owned",
            "truncate",
            "rename-table",
            "rename-column",
            "rename-schema",
            "rename-enum-value",
            "alter-column-type-lossy",
            "drop-not-null",
            "drop-default",
            "drop-constraint",
            "set-unlogged",
            "detach-partition",
            "alter-sequence-restart",
            "drop-policy",
            "disable-rls",
            "drop-extension",
        ] {
            assert_eq!(rule(id).unwrap().severity, Severity::Destructive, "{id}");
        }
        for id in [
            "create-index",
            "drop-index",
            "reindex",
            "add-foreign-key",
            "add-check-constraint",
            "add-unique-constraint",
            "set-not-null",
            "alter-column-type-rewrite",
            "add-column-volatile-default",
            "add-column-generated",
            "add-column-not-null",
            "vacuum-full",
            "cluster",
            "refresh-matview",
            "set-tablespace",
            "set-logged",
            "set-access-method",
            "attach-partition",
            // create-trigger was retired in 0.4.0 (issue #12: a new trigger is how an
            // expand phase keeps columns in step); see RETIRED.
            "alter-trigger-state",
            "replica-identity",
        ] {
            assert_eq!(rule(id).unwrap().severity, Severity::Risky, "{id}");
        }
    }
}
