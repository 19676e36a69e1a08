# keyturn: `make run` sets up and starts the app, `make test` sets up and runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup system-deps bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The integration tests start real OpenSSH hosts; they need sshd, sudo and chpasswd on this machine.
system-deps:
	@if [ "$$(id -u)" = 0 ] && ! { command -v sshd >/dev/null || [ -x /usr/sbin/sshd ]; } || ! command -v sudo >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client sudo passwd >/dev/null; \
		else echo "system-deps: not root, cannot install openssh-server/sudo; sshd tests will skip loudly" >&2; fi; \
	fi

run: $(STAMP)
	$(BIN)/keyturn

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/rotation_fleet.py

clean:
	rm -rf $(VENV)
