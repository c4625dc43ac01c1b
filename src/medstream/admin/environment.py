"""MEDSTREAM_* environment variables that name no setting: a typo there would otherwise be ignored in silence."""

from __future__ import annotations

from collections.abc import Mapping

from medstream.admin.exits import CommandError, Exit
from medstream.server.settings import ENV_PREFIX, Settings, env_of

# Read by `medstream user add` and `user set-password`, not a server setting.
USER_PASSWORD_VARIABLE = ENV_PREFIX + "USER_PASSWORD"
# The test suite's own variables (where its PostgreSQL is), which the command ignores.
_TEST_PREFIX = ENV_PREFIX + "TEST_"


def check_environment(environ: Mapping[str, str]) -> None:
    """CommandError naming each MEDSTREAM_* variable that is not a setting's, with the closest setting's."""
    known = {env_of(name) for name in Settings.model_fields} | {USER_PASSWORD_VARIABLE}
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known and not name.startswith(_TEST_PREFIX)
    )
    if unknown:
        raise CommandError(
            Exit.USAGE,
            f"unknown setting {', '.join(unknown)} in the environment: no setting has this variable "
            "(`medstream serve --help` lists them)",
        )
