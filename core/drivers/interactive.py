"""Interactive command sequences on a PTY shell channel: what switches, routers and `passwd` need.

A sequence is a list of steps: a line to type (with placeholders) and the answer regex that must come back
before the next line is typed (no answer: the prompt regex). Every value is checked for CR, LF and NUL before
the channel is even opened, so a value can never smuggle a second command. Devices echo what is typed: all
output is scrubbed of every secret in play, and the echo line of a step that typed a secret is dropped
whole, so what a failed step reports ("step 3: expected ..., received ...") never holds a secret.

Push outcome, as the engine's state machine needs it: a failure before any line carrying the new secret was
typed leaves the device unchanged (not applied); a failure after it is ambiguous (only a login can tell), and
a timeout or dropped channel after it may still land later (in flight).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from core.drivers.base import AMBIGUOUS, APPLIED, DEADLINE_MARGIN, NOT_APPLIED, DriverError, PushResult
from core.ssh import scrub

PLACEHOLDERS = ("username", "password", "login_password", "privilege_password")
SECRET_PLACEHOLDERS = ("password", "login_password", "privilege_password")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
# Terminal control sequences a device may print (colours, cursor moves); removed before matching and reporting.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]|\x07|\x08")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_BUFFER = 64 * 1024
REPORT_CHARS = 300
# Wide enough that no device wraps a typed line (a wrapped echo could split a secret past the scrubber).
PTY_COLUMNS = 1000
# No line is typed later than a margin (Timeouts.margin, by default DEADLINE_MARGIN) before the change's deadline.
ERROR_LINE_GRACE = 2.0  # seconds to wait for the rest of a device's error line once its start matched


class StepFailed(Exception):
    """A step's answer did not come; the message names the step and what was received (never a secret)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Step:
    """One line to type and the answer regex to wait for (empty: the prompt)."""

    send: str
    expect: str = ""

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """The secret placeholders this line types."""
        return tuple(n for n in _PLACEHOLDER.findall(self.send) if n in SECRET_PLACEHOLDERS)


@dataclass(frozen=True)
class Sequence:
    """Steps with the prompt regex, an optional refusal regex, the answer timeout and the pause before each line."""

    steps: tuple[Step, ...]
    prompt: str
    error: str = ""
    recv_timeout: float = 30.0
    delay_time: float = 0.0


@dataclass
class Values:
    """What placeholders stand for; secrets stay out of repr."""

    username: str
    password: str | None = field(default=None, repr=False)
    login_password: str | None = field(default=None, repr=False)
    privilege_password: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str | None]:
        """Every secret value (for scrubbing)."""
        return [self.password, self.login_password, self.privilege_password]


def build_sequence(commands: str | list[str] | tuple[str, ...], answers: str | list[str] | tuple[str, ...],
                   prompt: str, *, error: str = "", recv_timeout: float = 30.0, delay_time: float = 0.0) -> Sequence:
    """A sequence from commands and answers (one per line each; missing answers wait for the prompt)."""
    cmd_lines = commands.splitlines() if isinstance(commands, str) else list(commands)
    ans_lines = answers.splitlines() if isinstance(answers, str) else list(answers)
    cmd_lines = [c.rstrip("\r") for c in cmd_lines]
    while cmd_lines and not cmd_lines[-1].strip():
        cmd_lines.pop()
    if not cmd_lines:
        raise DriverError("commands: the sequence has no command", field="commands")
    if len(ans_lines) > len(cmd_lines):
        raise DriverError(f"answers: {len(ans_lines)} answers for {len(cmd_lines)} commands", field="answers")
    steps = tuple(Step(c, (ans_lines[i].strip() if i < len(ans_lines) else "")) for i, c in enumerate(cmd_lines))
    return Sequence(steps, prompt, error, recv_timeout, delay_time)


def check_sequence(seq: Sequence) -> None:
    """DriverError naming the problem when a sequence cannot run (bad regex, unknown placeholder)."""
    for name, pattern in (("prompt", seq.prompt), ("error", seq.error)):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise DriverError(f"{name}: not a valid regular expression ({exc})", field=name) from None
    if not seq.prompt:
        raise DriverError("prompt: empty", field="prompt")
    for n, step in enumerate(seq.steps, 1):
        try:
            re.compile(step.expect)
        except re.error as exc:
            raise DriverError(f"answers: line {n} is not a valid regular expression ({exc})", field="answers") from None
        unknown = [m for m in re.findall(r"\{([A-Za-z_]+)\}", step.send) if m not in PLACEHOLDERS]
        if unknown:
            raise DriverError(f"commands: line {n} has an unknown placeholder {{{unknown[0]}}} "
                              f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})", field="commands")
    if seq.recv_timeout <= 0:
        raise DriverError("recv_timeout: must be more than 0 seconds", field="recv_timeout")
    if seq.delay_time < 0:
        raise DriverError("delay_time: must not be negative", field="delay_time")


def render(seq: Sequence, values: Values) -> list[str]:
    """Each step's line with its placeholders filled; DriverError (before anything is sent) on a bad value."""
    for name in PLACEHOLDERS:
        value = getattr(values, name)
        if value is not None and any(c in value for c in "\r\n\0"):
            raise DriverError(f"{name}: contains a line break or NUL; refused before anything was sent", field=name)
    lines = []
    for n, step in enumerate(seq.steps, 1):
        if any(c in step.send for c in "\r\0"):
            raise DriverError(f"commands: line {n} contains a carriage return or NUL", field="commands")

        def fill(match: re.Match[str], n: int = n) -> str:
            value = getattr(values, match.group(1))
            if value is None:
                raise DriverError(f"commands: line {n} needs {{{match.group(1)}}} but none is known for this account", field="commands")
            return value

        lines.append(_PLACEHOLDER.sub(fill, step.send))
    return lines


def clean(text: str) -> str:
    """Device output without terminal control sequences, CRs folded, other control characters removed."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


class ShellSession:
    """A PTY shell channel on an authenticated connection; reads are bounded by the step timeout."""

    def __init__(self, client: paramiko.SSHClient, secrets: Iterable[str | None], *, open_timeout: float = 30.0) -> None:
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise DriverError("the connection is closed")
        self.secrets = [s for s in secrets if s]
        try:
            self.chan = transport.open_session(timeout=open_timeout)
            self.chan.get_pty(term="vt100", width=PTY_COLUMNS, height=50)
            self.chan.invoke_shell()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise DriverError(f"could not open an interactive shell: {type(exc).__name__}") from None
        self.buffer = ""

    def read_until(self, done: re.Pattern[str], error: re.Pattern[str] | None, prompt: re.Pattern[str] | None,
                   timeout: float, *, done_is_prompt: bool = False) -> tuple[str, str]:
        """Read until done matches ("ok"), error matches ("error") or the prompt returns first ("prompt").

        A prompt is looked for only after the first line break (the echo of the typed line): a half-received
        echo ending in `#` or `$` must not pass for the device's prompt. Raises StepFailed(timed_out=True)
        after timeout seconds, ConnectionError when the channel closes.
        """
        deadline = time.monotonic() + timeout
        grace: float | None = None  # an error matched mid-line: until when to wait for the rest of that line
        while True:
            text = clean(self.buffer)
            after_echo = text.split("\n", 1)[1] if "\n" in text else ""
            found = error.search(text) if error is not None and error.pattern else None
            if found is not None:
                # Report the host's whole message line ("su: " first, "Authentication failure" a moment later).
                if "\n" in text[found.end():] or (grace is not None and time.monotonic() >= grace):
                    return "error", text
                grace = grace or min(deadline, time.monotonic() + ERROR_LINE_GRACE)
            if done.search(after_echo if done_is_prompt else text):
                return "ok", text
            if prompt is not None and prompt.search(after_echo):
                return "prompt", text
            left = (grace if grace is not None else deadline) - time.monotonic()
            if left <= 0:
                if grace is not None:
                    return "error", text
                raise StepFailed("", timed_out=True)
            self.chan.settimeout(min(left, 1.0))
            try:
                data = self.chan.recv(4096)
            except socket.timeout:
                continue
            if not data:
                if found is not None:
                    return "error", text  # the device said why, then hung up
                raise ConnectionError("the channel closed")
            self.buffer = (self.buffer + data.decode(errors="replace"))[-MAX_BUFFER:]

    def send_line(self, line: str) -> None:
        """Type one line (Enter is CR, as a terminal sends it)."""
        self.buffer = ""
        self.chan.sendall((line + "\r").encode())

    def close(self) -> None:
        """Interrupt whatever still runs (Ctrl-C) and close the channel."""
        try:
            if not self.chan.closed:
                self.chan.sendall(b"\x03")
        except (paramiko.SSHException, OSError, EOFError):
            pass
        self.chan.close()


def _report(text: str, secrets: list[str], typed_secret: bool) -> str:
    """What a step received, fit for an error message: scrubbed, a secret line's echo dropped, shortened."""
    if typed_secret and "\n" in text:
        # The first line is the device's echo of the line typed (when it echoes): it held a secret.
        text = "<echo of a line holding a secret>\n" + text.split("\n", 1)[1]
    text = scrub(text, list(secrets)).strip()
    text = " | ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return text[-REPORT_CHARS:] if len(text) > REPORT_CHARS else text or "nothing"


def run_sequence(client: paramiko.SSHClient, seq: Sequence, values: Values, *, changes_field: str = "password",
                 log: list[str] | None = None, deadline: float | None = None,
                 margin: float = DEADLINE_MARGIN) -> PushResult:
    """Run seq on a new PTY shell of client: applied, not applied (nothing changed yet) or ambiguous.

    changes_field names the placeholder whose line makes the change ({password}); until a line holding it was
    typed, a failure means the device is unchanged. log (optional) receives one scrubbed line per step.
    deadline (epoch seconds): no line is typed after deadline - margin (Timeouts.margin), and no answer is
    awaited past it. A device cannot enforce a deadline itself; its CLI session ends with the connection.
    """
    check_sequence(seq)
    lines = render(seq, values)  # refuses CR/LF/NUL before anything is sent
    secrets = [s for s in values.secrets() if s]
    # Answers and the prompt are matched at the end of the output so far (`$` is its end, not a line's end).
    prompt = re.compile(seq.prompt)
    error = re.compile(seq.error, re.MULTILINE) if seq.error else None
    pause = _TestPause.from_env()
    try:
        session = ShellSession(client, secrets, open_timeout=seq.recv_timeout)
    except DriverError as exc:
        return PushResult(NOT_APPLIED, str(exc))
    changing = False  # a line typing the new secret has been sent
    n = 0
    try:
        try:
            state, text = session.read_until(prompt, error, None, seq.recv_timeout)
        except StepFailed:
            return PushResult(NOT_APPLIED, f"no prompt within {seq.recv_timeout:g}s after login: "
                                           f"{_report(clean(session.buffer), secrets, False)}")
        if state == "error":
            return PushResult(NOT_APPLIED, f"the device refused the login session: {_report(text, secrets, False)}")
        for n, (step, line) in enumerate(zip(seq.steps, lines), 1):
            if seq.delay_time:
                time.sleep(seq.delay_time)
            if deadline is not None and time.time() > deadline - margin:
                raise StepFailed(f"step {n}: the change's deadline came before this line could be typed")
            typed_secret = bool(step.secret_fields)
            session.send_line(line)
            changing = changing or changes_field in step.secret_fields
            pause.at(n)
            expect = re.compile(step.expect) if step.expect else prompt
            wanted = step.expect or f"the prompt {seq.prompt}"
            wait = seq.recv_timeout
            if deadline is not None:
                wait = max(0.1, min(wait, deadline - time.time()))
            try:
                # The prompt coming back before the expected answer ends the step at once (no need to wait).
                state, text = session.read_until(expect, error, prompt if step.expect else None, wait,
                                                 done_is_prompt=not step.expect)
            except StepFailed:
                got = _report(clean(session.buffer), secrets, typed_secret)
                raise StepFailed(f"step {n}: expected {wanted!r} within {wait:g}s, received: {got}",
                                 timed_out=True) from None
            if state != "ok":
                raise StepFailed(f"step {n}: expected {wanted!r}, received: {_report(text, secrets, typed_secret)}")
            if log is not None:
                log.append(f"step {n}: ok")
    except StepFailed as exc:
        msg = scrub(str(exc), list(secrets))
        if not changing:
            return PushResult(NOT_APPLIED, msg)
        return PushResult(AMBIGUOUS, msg, in_flight=exc.timed_out)
    except (ConnectionError, paramiko.SSHException, OSError, EOFError) as exc:
        what = f"the connection broke at step {n}: {type(exc).__name__}"
        if not changing:
            return PushResult(NOT_APPLIED, what)
        return PushResult(AMBIGUOUS, what, in_flight=True)
    finally:
        session.close()
    return PushResult(APPLIED)


class _TestPause:
    """Crash-test hook, inert unless KEYTURN_TEST_PAUSE_AFTER="step-N[:FLAGFILE]": sleep right after typing
    step N (KEYTURN_TEST_PAUSE_SECONDS, default 3600) once FLAGFILE says so, so a test can SIGKILL the process
    in the middle of a sequence. Nothing else reads these variables (see core/engine.py for the other points)."""

    def __init__(self, step: int | None, flag: str | None, seconds: float) -> None:
        self.step, self.flag, self.seconds = step, flag, seconds

    @classmethod
    def from_env(cls) -> "_TestPause":
        point, _, flag = os.environ.get("KEYTURN_TEST_PAUSE_AFTER", "").partition(":")
        if not point.startswith("step-") or not point[5:].isdigit():
            return cls(None, None, 0)
        return cls(int(point[5:]), flag or None, float(os.environ.get("KEYTURN_TEST_PAUSE_SECONDS", "3600")))

    def at(self, n: int) -> None:
        if self.step != n:
            return
        if self.flag:
            Path(self.flag).write_text(f"step-{n}")
        time.sleep(self.seconds)
