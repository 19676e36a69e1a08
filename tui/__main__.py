"""`python -m tui` runs the keyturn command line."""

from tui.cli import main

raise SystemExit(main())
