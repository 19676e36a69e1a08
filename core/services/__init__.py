"""Application services: each public function is one use case a person can start, from the app or the CLI.

A use case takes the acting identity from the Context, checks permission itself, validates with errors that
name their field, writes in one transaction with its audit event inside it, and returns plain data. Front ends
(tui/screens, tui/modals, tui/cli) only turn input into a call and the result into output. See
docs/architecture.md for which module owns what.
"""
