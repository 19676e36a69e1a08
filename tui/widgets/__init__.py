"""Reusable widgets of the keyturn app: the mode bar, the live run panel, and display helpers."""
