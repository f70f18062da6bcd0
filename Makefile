# pg_migsafe — see README.md. Every target installs what it needs (tests/tools/deps.sh).
PG_MAJOR ?= 15
# The server under test: the system's (/usr/lib/postgresql/N, Debian's 15 or a PGDG
# package), else PostgreSQL N unpacked from a pinned PyPI wheel into target/pg-majors
# (tests/pg-majors/README.md; tests/tools/deps.sh fetches it).
ifneq ($(wildcard /usr/lib/postgresql/$(PG_MAJOR)/bin/pg_config),)
PGBIN := /usr/lib/postgresql/$(PG_MAJOR)/bin
else
PGBIN := $(CURDIR)/target/pg-majors/pg$(PG_MAJOR)/root/bin
# One build directory per such major: switching majors rebuilds nothing.
export CARGO_TARGET_DIR := $(CURDIR)/target/pg$(PG_MAJOR)
endif
PG_CONFIG ?= $(PGBIN)/pg_config
PG_FEATURE ?= pg$(PG_MAJOR)
export PG_MAJOR PG_CONFIG
export PGBIN
RUNAS ?= postgres
TMPBASE ?= $(CURDIR)/target/migsafe-tmp
PGRX_TEST_DATA := $(TMPBASE)/pgrx-test-data
DEMO_DIR := $(TMPBASE)/demo
PYTEST := .venv/bin/pytest

.PHONY: all deps build install package test pgtest integration regress-compare demo demo-stop bench bench-audit bench-locks docs fmt lint check-versions check-migrations clean

all: build

deps:
	@bash tests/tools/deps.sh

build: deps
	cargo build --no-default-features --features $(PG_FEATURE)

# The install scripts of earlier releases (sql/released/) stay installable, so that a
# database on an old version can be created for the upgrade tests; cargo pgrx install
# copies the upgrade scripts (sql/pg_migsafe--OLD--NEW.sql) itself.
install: deps
	cargo pgrx install --pg-config $(PG_CONFIG) --no-default-features --features $(PG_FEATURE)
	install -m 644 sql/released/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"

# Release artefacts for PG_MAJOR (a release build): a tarball and a .deb in dist/
# (tests/tools/package.sh, docs/ci.md).
package: deps
	bash tests/tools/package.sh

# The pull-request check (docs/ci.md): the .sql files of DIR added since the git ref
# SINCE are dry-run on a throwaway cluster after the others; exits 1 on a destructive
# change. E.g. make check-migrations DIR=drizzle SINCE=origin/main
check-migrations: install
	@test -n "$(DIR)" -a -n "$(SINCE)" || { echo "usage: make check-migrations DIR=<migrations folder> SINCE=<git ref>"; exit 2; }
	.venv/bin/python tools/pg_migsafe-check --dir $(DIR) --since $(SINCE)

# The engine's unit tests (crates/engine: plain Rust, no server), then the shell's
# unit tests and #[pg_test]s, in a fresh pgrx test cluster run as $(RUNAS).
pgtest: deps
	cargo test -p migsafe_engine
	rm -rf $(PGRX_TEST_DATA) && install -d -o $(RUNAS) $(PGRX_TEST_DATA)
	chmod o+rx $(TMPBASE)
	cargo pgrx test $(PG_FEATURE) --runas $(RUNAS) --pgdata $(PGRX_TEST_DATA)

# Integration tests: scratch clusters started by the harness, the installed extension.
integration: install
	mkdir -p $(TMPBASE) && chmod o+rx $(TMPBASE)
	MIGSAFE_TEST_TMP=$(TMPBASE) $(PYTEST) -p no:cacheprovider -q -rfE tests/integration

# PostgreSQL's own regression suite with pg_migsafe (migsafe.mode = 'warn', extension
# created) and without, compared file by file after removing pg_migsafe's own messages
# (tests/tools/regress_compare.py). The suite of the installed server's exact Debian
# version is fetched once into target/regress-src (apt-get source --download-only).
# REGRESS_COMPARE_ARGS=--parallel runs each schedule group's tests concurrently.
REGRESS_COMPARE_ARGS ?=
regress-compare: install
	mkdir -p $(TMPBASE) && chmod o+rx $(TMPBASE)
	MIGSAFE_TEST_TMP=$(TMPBASE) python3 tests/tools/regress_compare.py --pg-config $(PG_CONFIG) --cache $(CURDIR)/target/regress-src $(REGRESS_COMPARE_ARGS)

# `cargo pgrx test` installs its own build (with the tests schema); `integration`
# installs the real one afterwards.
# PostgreSQL's regression suite needs the server's sources (apt-get source): with a
# server from apt only.
ifneq ($(wildcard /usr/lib/postgresql/$(PG_MAJOR)/bin/pg_config),)
test: pgtest integration regress-compare
else
test: pgtest integration
endif

demo: install
	@bash tests/tools/demo.sh start $(DEMO_DIR)

demo-stop:
	@bash tests/tools/demo.sh stop $(DEMO_DIR)

bench: deps
	cargo pgrx install --release --pg-config $(PG_CONFIG) --no-default-features --features $(PG_FEATURE)
	install -m 644 sql/released/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"
	mkdir -p $(TMPBASE) && chmod o+rx $(TMPBASE)
	MIGSAFE_TEST_TMP=$(TMPBASE) .venv/bin/python tests/bench/bench.py
	MIGSAFE_TEST_TMP=$(TMPBASE) .venv/bin/python tests/bench/audit_scale.py
	MIGSAFE_TEST_TMP=$(TMPBASE) .venv/bin/python tests/bench/work_rates.py
	MIGSAFE_TEST_TMP=$(TMPBASE) .venv/bin/python tests/bench/lock_retries.py

# Only the traffic during a migration that waits for a lock (lock retries).
bench-locks: deps
	cargo pgrx install --release --pg-config $(PG_CONFIG) --no-default-features --features $(PG_FEATURE)
	install -m 644 sql/released/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"
	mkdir -p $(TMPBASE) && chmod o+rx $(TMPBASE)
	MIGSAFE_TEST_TMP=$(TMPBASE) .venv/bin/python tests/bench/lock_retries.py

# Only the audit log at scale (the section of docs/PERFORMANCE.md it writes).
bench-audit: deps
	cargo pgrx install --release --pg-config $(PG_CONFIG) --no-default-features --features $(PG_FEATURE)
	install -m 644 sql/released/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"
	mkdir -p $(TMPBASE) && chmod o+rx $(TMPBASE)
	MIGSAFE_TEST_TMP=$(TMPBASE) .venv/bin/python tests/bench/audit_scale.py

# Regenerates docs/rules.md from the rule catalog.
docs:
	MIGSAFE_BLESS=1 cargo test -p migsafe_engine -- docs::

# Type-checks PG 13-17 with pgrx's pregenerated bindings (no headers needed).
check-versions:
	bash tests/tools/check-versions.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --no-default-features --features "$(PG_FEATURE) pg_test" -- -D warnings
	cargo clippy -p migsafe_engine --all-targets -- -D warnings

clean:
	-bash tests/tools/demo.sh stop $(DEMO_DIR)
	rm -rf $(TMPBASE)
	cargo clean
