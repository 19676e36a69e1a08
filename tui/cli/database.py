"""keyturn db: the schema of keyturn's own database (SQLite file or PostgreSQL server)."""

from __future__ import annotations

import argparse

from core.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add `keyturn db status` and `keyturn db upgrade`."""
    db = sub.add_parser("db", help="keyturn's own database: schema status and upgrade",
                        description="Show or upgrade the schema of keyturn's database (database_url, or SQLite "
                        "in the data directory). Every command also upgrades on start; `db upgrade` does it alone, "
                        "without the master key, e.g. before starting workers on a new server.")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    status = db_sub.add_parser("status", help="where the database is and its schema revision")
    status.set_defaults(standalone=cmd_status)
    upgrade = db_sub.add_parser("upgrade", help="apply pending schema migrations")
    upgrade.set_defaults(standalone=cmd_upgrade)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """Print the database's place and revision; exit 1 when it is behind."""
    from core.database import database_status

    st = database_status(settings)
    print(f"database: {st.url} ({st.backend})")
    print(f"schema: {st.revision or 'empty'}; newest: {st.head}{'' if st.current else ' (run `keyturn db upgrade`)'}")
    return 0 if st.current else 1


def cmd_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    """Bring the schema to the newest revision."""
    from core.database import upgrade_database

    before, after = upgrade_database(settings)
    if before.current:
        print(f"database {after.url} is at the newest schema ({after.head}); nothing to do")
    else:
        print(f"database {after.url}: schema {before.revision or 'empty'} -> {after.revision}")
    return 0
