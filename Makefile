# keyturn: `make run` sets up and starts the app, `make test` sets up and runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup system-deps bench clean lock

# Every dependency comes from requirements.lock, pinned with hashes (pip refuses a file that differs);
# keyturn itself is installed on top without resolving anything again.
# After changing dependencies in pyproject.toml: make lock.
$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

lock:
	$(PY) -m venv .lockenv && .lockenv/bin/pip install -q pip-tools
	.lockenv/bin/pip-compile -q --generate-hashes --extra test --strip-extras --allow-unsafe -o requirements.lock pyproject.toml
	rm -rf .lockenv

setup: $(STAMP)

# The integration tests start real OpenSSH hosts (sshd, sudo, chpasswd) and read the database with sqlite3;
# the interactive tests need passwd, su, visudo and pam_pwquality (enabled only inside a sandbox host).
SYSTEM_TOOLS := /usr/sbin/sshd /usr/bin/sudo /usr/sbin/chpasswd /usr/bin/sqlite3 /usr/bin/nsenter /usr/bin/unshare \
	/usr/bin/passwd /usr/bin/su /usr/sbin/visudo /usr/sbin/useradd
DB_TOOLS := /usr/bin/mariadb-install-db /usr/sbin/mariadbd /usr/bin/redis-server
# Marking pwquality as seen keeps pam-auth-update from enabling it for the whole machine on install.
PWQUALITY := $(firstword $(wildcard /lib/*/security/pam_pwquality.so /usr/lib/*/security/pam_pwquality.so) /lib/x86_64-linux-gnu/security/pam_pwquality.so)
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS) $(PWQUALITY); do [ -e $$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing openssh-server sudo sqlite3 libpam-pwquality (missing:$$missing)"; \
			{ grep -qx pwquality /var/lib/pam/seen 2>/dev/null || echo pwquality >> /var/lib/pam/seen; }; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				openssh-server openssh-client sudo passwd sqlite3 util-linux libpam-pwquality >/dev/null; \
		else echo "system-deps: not root; missing$$missing; the sandbox sshd tests will say why they skip" >&2; fi; \
	fi
	@# The database tests start private PostgreSQL, MariaDB and Redis servers (tests/dbservers.py) from these
	@# packages' programs; the packages' own services are not used.
	@missing=""; for t in $(DB_TOOLS); do [ -e $$t ] || missing="$$missing $$t"; done; \
	[ -n "$(wildcard /usr/lib/postgresql/*/bin/initdb)" ] || missing="$$missing initdb"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing postgresql mariadb-server redis-server (missing:$$missing)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				postgresql mariadb-server redis-server >/dev/null; \
		else echo "system-deps: not root; missing$$missing; the database tests will say why they skip" >&2; fi; \
	fi

run: $(STAMP)
	$(BIN)/keyturn

# Lint (rules in pyproject.toml [tool.ruff]) and types of core/ and storage/ first: they take seconds.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Four workers on two cores: the suite mostly waits (sshd logins, slowed PAM stacks, push deadlines).
# Each worker has its own sandbox hosts (127.0.0.x on free ports), temp dirs and PostgreSQL cluster.
# `--dist worksteal`: an idle worker takes queued tests from a busy one, so the last minutes do not run a few long
# tests alone (7 min instead of 11 min 23 s on a quiet machine). Its two first runs each met a load flake, both
# fixed since; the next run (945 tests, -n 2, load 7-11) was green.
TEST_WORKERS ?= 4
test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/rotation_fleet.py

clean:
	rm -rf $(VENV)
