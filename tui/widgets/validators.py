"""A textual Validator that runs one of keyturn's own checks, so forms and the CLI judge input alike."""

from __future__ import annotations

from collections.abc import Callable

from textual.validation import ValidationResult, Validator

from core.errors import InputError


class CoreCheck(Validator):
    """Pass when check(value) raises nothing; an InputError or ValueError message becomes the field's error line."""

    def __init__(self, check: Callable[[str], object]) -> None:
        super().__init__()
        self.check = check

    def validate(self, value: str) -> ValidationResult:
        """Run the check on the field's value."""
        try:
            self.check(value)
        except (InputError, ValueError) as exc:
            return self.failure(str(exc))
        return self.success()
