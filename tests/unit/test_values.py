"""One parser per value: inventory files, the CLI, the forms and task files accept the same spellings."""

from __future__ import annotations

import pytest

from core import tasks, values
from core.errors import InputError


@pytest.mark.parametrize("text", ["ssh_key", "ssh-key", "SSH-Key ", "key"])
def test_every_door_accepts_the_same_secret_type_spellings(text: str) -> None:
    assert values.parse_secret_type(text) == "ssh_key"
    assert tasks.parse_secret_type(text) == "ssh_key"  # a task file's or --type's value


def test_bad_values_are_input_errors_naming_their_field_and_value_errors_for_line_collectors() -> None:
    with pytest.raises(InputError) as err:
        values.parse_platform("beos")
    assert err.value.field == "platform" and isinstance(err.value, ValueError)
    with pytest.raises(InputError, match="^type: unknown secret type 'token'") as err:
        tasks.parse_secret_type("token")
    assert err.value.field == "type"
    assert values.parse_secret_type("") == "password" and values.parse_platform(None) == "linux"
