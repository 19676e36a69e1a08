"""Ready-made command sequences for the `custom-ssh` platform, and the self-change sequence of POSIX hosts.

A template is a starting point a user picks (and may edit) in a task: one command per line, one answer regex
per command (what must come back before the next line is sent; empty = wait for the prompt). Placeholders:
{username} (the account), {password} (its new secret), {login_password} (the secret keyturn logs in with),
{privilege_password} (the enable / su / sudo password). `checked_against` says honestly what each was run
against; docs/platforms.md repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InputError


@dataclass(frozen=True)
class Template:
    """A named command sequence: commands, one answer regex each, the prompt, and what it was checked against."""

    name: str
    title: str
    commands: tuple[str, ...]
    answers: tuple[str, ...]
    prompt: str
    # Output that means the device refused (stop at once with its message instead of waiting out the timeout).
    error: str = ""
    checked_against: str = ""

    @property
    def commands_text(self) -> str:
        """The commands one per line, as a user edits them."""
        return "\n".join(self.commands)

    @property
    def answers_text(self) -> str:
        """The answer regexes one per line, as a user edits them."""
        return "\n".join(self.answers)


# Prompt of a POSIX shell: `$` or `#` (possibly followed by a space) at the end of the output so far.
POSIX_PROMPT = r"[$#] ?$"
# Lines passwd and PAM print when they refuse a new password (pam_unix, pam_pwquality, AIX passwd).
PASSWD_ERROR = (r"BAD PASSWORD|[Aa]uthentication token manipulation error|password unchanged|"
                r"[Pp]assword (is )?too|passwd: .*(fail|error|denied|not )|[Pp]ermission denied|You must wait|"
                r"Sorry")
_NEW = r"(?i)new[^\n:]*password[^\n:]*: ?$"
_RETYPE = r"(?i)(retype|again|re-enter|confirm)[^\n:]*: ?$"
_DONE = r"(?i)(updated successfully|password changed|successfully)"

TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template(
        "cisco-ios", "Cisco IOS / IOS-XE: enable, username ... secret, write memory",
        ("enable", "{privilege_password}", "configure terminal", "username {username} privilege 15 secret {password}",
         "end", "write memory"),
        (r"[Pp]assword: ?$", r"#\s?$", r"\(config\)#\s?$", r"\(config\)#\s?$", r"#\s?$", r"\[OK\]|#\s?$"),
        prompt=r"[>#]\s?$", error=r"% ?(Invalid|Incomplete|Ambiguous|Bad|Access denied)",
        checked_against="fakenos 1.2 cisco_ios emulation (prompts and the enable/configure flow, over SSH on "
                        "loopback); the username/secret syntax follows Cisco's IOS security command reference. "
                        "No real IOS device was available.",
    ),
    Template(
        "arista-eos", "Arista EOS: enable, username ... secret, write memory",
        ("enable", "{privilege_password}", "configure terminal", "username {username} secret {password}", "end",
         "write memory"),
        (r"[Pp]assword: ?$", r"#\s?$", r"\(config\)#\s?$", r"\(config\)#\s?$", r"#\s?$", r"#\s?$"),
        prompt=r"[>#]\s?$", error=r"% ?(Invalid|Incomplete|Ambiguous|Bad|Authorization denied)",
        checked_against="fakenos 1.2 arista_eos emulation (prompts and the enable/configure flow, over SSH on "
                        "loopback); the syntax follows Arista's EOS user manual. No real EOS device was available.",
    ),
    Template(
        "juniper-junos", "Juniper Junos: plain-text-password with its two prompts, commit and-quit",
        ("configure", "set system login user {username} authentication plain-text-password", "{password}",
         "{password}", "commit and-quit"),
        (r"#\s?$", r"(?i)new password: ?$", r"(?i)retype new password: ?$", r"#\s?$", r"commit complete"),
        prompt=r"[>#%]\s?$", error=r"error:|syntax error|unknown command|[Mm]inimum password length",
        checked_against="fakenos 1.2 juniper_junos emulation (the operational prompt only: it does not emulate "
                        "configuration mode's password prompts); the two prompts follow Juniper's Junos CLI "
                        "user guide. No real Junos device was available.",
    ),
    Template(
        "linux-passwd", "Linux passwd as root (log in as root)",
        ("passwd {username}", "{password}", "{password}"),
        (_NEW, _RETYPE, _DONE),
        prompt=POSIX_PROMPT, error=PASSWD_ERROR,
        checked_against="Debian 12 passwd (shadow 4.13) and PAM on keyturn's sandbox sshd hosts "
                        "(tests/integration/test_interactive.py).",
    ),
    Template(
        "linux-passwd-sudo", "Linux passwd through sudo (NOPASSWD sudo for the login account)",
        ("sudo passwd {username}", "{password}", "{password}"),
        (_NEW, _RETYPE, _DONE),
        prompt=POSIX_PROMPT, error=PASSWD_ERROR,
        checked_against="Debian 12 sudo 1.9 and passwd on keyturn's sandbox sshd hosts "
                        "(tests/integration/test_interactive.py).",
    ),
    Template(
        "linux-passwd-su", "Linux passwd through su (root's password as the privilege password)",
        ("su - root", "{privilege_password}", "passwd {username}", "{password}", "{password}", "exit"),
        (r"(?i)password: ?$", POSIX_PROMPT, _NEW, _RETYPE, _DONE, POSIX_PROMPT),
        prompt=POSIX_PROMPT, error=PASSWD_ERROR + r"|su: ",
        checked_against="Debian 12 su (util-linux) and passwd with real PAM on keyturn's sandbox sshd hosts "
                        "(tests/integration/test_interactive.py).",
    ),
)}

# Self-change on linux/unix/aix: the account runs passwd itself (current, new, retyped password).
SELF_PASSWD = Template(
    "self-passwd", "passwd run by the account itself",
    ("passwd", "{login_password}", "{password}", "{password}"),
    (r"(?i)(current|old)[^\n:]*password[^\n:]*: ?$", _NEW, _RETYPE, _DONE),
    prompt=POSIX_PROMPT, error=PASSWD_ERROR,
    checked_against="Debian 12 passwd with pam_unix and pam_pwquality on keyturn's sandbox sshd hosts "
                    "(tests/integration/test_interactive.py); AIX's prompts (Old/New/again) match the same "
                    "regexes but no AIX host was available.",
)


def get_template(name: str) -> Template:
    """The template called name, or InputError naming the known ones."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise InputError(f"template: no template named {name!r} (known: {', '.join(TEMPLATES)})") from None
