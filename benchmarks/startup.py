"""Startup: how long `keyturn --help`, `keyturn asset list` and `keyturn task list` take, against bare Python.

Sets up a small vault in a temporary data directory through the command line itself (`keyturn init`, 20 assets
with one account each, one task), then runs each command ROUNDS times (default 10) as a subprocess of the
console script, in rotating order so that a burst of load elsewhere on the machine hits every command alike.
It prints per command the median and the fastest wall time, the median CPU time (user + system of the child:
it moves much less than wall time with the machine's load), and the median wall time as a fraction of the
target. The floor, measured in the same run, is `python -c pass` with the same interpreter.

The children get a clean environment (no PYTHONDONTWRITEBYTECODE): the warm-up run writes the .pyc files, as
an installed keyturn has them. With --baseline DIR the same commands also run from another checkout (for
example `git archive main | tar -x -C DIR`, put first on PYTHONPATH) in the same rounds, so that both sets of
figures see the same load.

Targets: `--help` under 0.3 s, `asset list` under 0.6 s (an idle machine). `task list` has no target; it
shows the cost of a second command group that also needs the database.

Run: .venv/bin/python benchmarks/startup.py [ROUNDS] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYTURN = Path(sys.executable).parent / "keyturn"
TARGETS = {"keyturn --help": 0.3, "keyturn asset list": 0.6}
ASSETS = 20


def _env(home: str) -> dict[str, str]:
    """A clean environment: the vault in home, no config file, a fixed operator name."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
            "KEYTURN_HOME": os.path.join(home, "data"), "KEYTURN_CONFIG": os.path.join(home, "none.toml"),
            "KEYTURN_OPERATOR": "bench"}


def _keyturn(env: dict[str, str], *args: str, stdin: str = "") -> None:
    subprocess.run([str(KEYTURN), *args], env=env, input=stdin, text=True, check=True, stdout=subprocess.DEVNULL)


def setup_vault(env: dict[str, str]) -> None:
    """init, ASSETS assets under two nodes with one password account each, and one task over them."""
    _keyturn(env, "init")
    for i in range(ASSETS):
        _keyturn(env, "asset", "add", f"h{i:02d}", "--address", f"10.0.0.{i + 1}",
                 "--node", f"/bench/g{i % 2}")
        _keyturn(env, "account", "add", f"h{i:02d}", "app", "--password-stdin", stdin=f"Pw-{i}-start-x9\n")
    _keyturn(env, "task", "create", "bench", "--accounts", "app", "--node", "/bench")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run of cmd; its output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", nargs="?", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--baseline", metavar="DIR", help="also run the commands from the checkout in DIR")
    opts = parser.parse_args()
    keyturn_commands = {"--help": ["--help"], "asset list": ["asset", "list"], "task list": ["task", "list"]}
    commands: dict[str, tuple[list[str], dict[str, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="keyturn-startup-") as home:
        env = _env(home)
        setup_vault(env)
        commands["python -c pass"] = ([sys.executable, "-c", "pass"], env)
        for label, args in keyturn_commands.items():
            commands[f"keyturn {label}"] = ([str(KEYTURN), *args], env)
        if opts.baseline:
            base_env = {**env, "PYTHONPATH": str(Path(opts.baseline).resolve())}
            for label, args in keyturn_commands.items():
                commands[f"baseline {label}"] = ([str(KEYTURN), *args], base_env)
        for cmd, cmd_env in commands.values():  # warm the page cache and the .pyc files before the clock
            timed(cmd, cmd_env)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for r in range(opts.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                wall, cpu = timed(*commands[name])
                walls[name].append(wall)
                cpus[name].append(cpu)
    print(f"{opts.rounds} rounds, load average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'command':<22} {'median s':>9} {'min s':>7} {'cpu s':>7} {'target s':>9} {'median/target':>14}")
    for name in commands:
        med = statistics.median(walls[name])
        target = TARGETS.get(name)
        ratio = f"{med / target:.2f}" if target else "-"
        print(f"{name:<22} {med:>9.3f} {min(walls[name]):>7.3f} {statistics.median(cpus[name]):>7.3f} "
              f"{target if target else '-':>9} {ratio:>14}")

if __name__ == "__main__":
    main()
