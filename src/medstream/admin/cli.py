"""The command line of the server install: `medstream serve | demo | user ... | backup | check`. `medstream.cli`
runs it once it has found the server's packages installed."""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import os
import sys
import traceback
from typing import NoReturn, get_args

import pydantic
from pydantic_settings import CliSettingsSource, SettingsError

from medstream import __version__
from medstream.admin.commands import add_commands as add_admin_commands
from medstream.admin.commands import run as run_admin
from medstream.admin.environment import check_environment
from medstream.admin.exits import CommandError, Exit, InvalidSettingError
from medstream.admin.listening import bind
from medstream.admin.opening import open_database
from medstream.errors import MedstreamError
from medstream.server.log_format import logging_config
from medstream.server.settings import ENV_PREFIX, Settings, describe_settings_error, env_of, flag_of


def _server_options(parser: argparse.ArgumentParser) -> CliSettingsSource[Settings]:
    """A flag for every setting, generated from the model (name, type, default, description, environment)."""
    return CliSettingsSource(
        Settings,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_hide_none_type=True,
        cli_show_env_vars=True,
        cli_shortcuts={"database_url": "database"},
    )


_SETTINGS_HELP = (
    f"Each option is also an environment variable ({ENV_PREFIX}PORT for --port); an option given here wins over "
    "the environment, which wins over the default."
)


class _Parser(argparse.ArgumentParser):
    """A usage error (an unknown option, a missing argument) is one line, exit code 2 (admin.exits.Exit.USAGE)."""

    def error(self, message: str) -> NoReturn:
        self.exit(Exit.USAGE, f"{self.prog}: {message} (`{self.prog} --help` lists the options)\n")


# The settings the admin commands without the server's options (`user ...`, `backup`) take as options too.
_LOGGING_SETTINGS = ("log_level", "log_format")


def _logging_options() -> argparse.ArgumentParser:
    """`--log-level` and `--log-format` of the commands that do not take every setting, from the same fields of
    the settings model as `serve`'s (choices, meaning, environment variable)."""
    options = _Parser(add_help=False)
    for name in _LOGGING_SETTINGS:
        field = Settings.model_fields[name]
        options.add_argument(
            flag_of(name),
            choices=get_args(field.annotation),
            default=None,
            help=f"{field.description} (default: {env_of(name)}, else {field.default})",
        )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medstream", description="Medical data with live entity events.")
    parser.add_argument("--version", action="version", version=f"medstream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server", description=_SETTINGS_HELP)
    serve.set_defaults(settings_source=_server_options(serve))

    demo = commands.add_parser(
        "demo", help="run the server and drive the seed scenario through the SDK", description=_SETTINGS_HELP
    )
    demo.add_argument("--exit", action="store_true", help="stop the server once the scenario is done")
    demo.set_defaults(settings_source=_server_options(demo))

    add_admin_commands(commands, _logging_options())
    check = commands.add_parser(
        "check",
        help="check the configuration, the database, its migrations and its event log (changes nothing)",
        description=_SETTINGS_HELP,
    )
    check.set_defaults(settings_source=_server_options(check))
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of `serve`, `demo` and `check` from their flags over the environment; for the other admin
    commands, their --database, --log-level and --log-format over the environment. A value that is not valid is
    one line naming the setting."""
    try:
        source: CliSettingsSource[Settings] | None = getattr(args, "settings_source", None)
        if source is not None:
            return Settings(_cli_settings_source=source(parsed_args=args))
        given = {"database_url": args.database} | {name: getattr(args, name) for name in _LOGGING_SETTINGS}
        return Settings(**{name: value for name, value in given.items() if value is not None})
    except (pydantic.ValidationError, SettingsError) as exc:
        raise InvalidSettingError(describe_settings_error(exc)) from None


def _serve(settings: Settings) -> None:
    from medstream.server.runner import make_server

    sock = bind(settings.host, settings.port)
    try:
        asyncio.run(_prepare_database(settings))
        server = make_server(settings, freeze_gc=True)
        try:
            import uvloop  # uvicorn[standard] brings it on Linux and macOS
        except ImportError:  # pragma: no cover - Windows
            asyncio.run(server.serve(sockets=[sock]))
        else:
            uvloop.run(server.serve(sockets=[sock]))
    finally:
        sock.close()


async def _prepare_database(settings: Settings) -> None:
    """Open the database (creating a SQLite file that is not there, and saying so) and migrate it, so that a
    database that cannot be used is one line before the server starts."""
    database = await open_database(settings.database_url, create=True)
    await database.close()


async def _demo(args: argparse.Namespace, settings: Settings) -> None:
    from medstream.demo import run_demo

    await _prepare_database(settings)
    await run_demo(settings, keep_serving=not args.exit)


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    debug = False
    try:
        check_environment(os.environ)
        settings = _settings(args)
        # Every line the command logs, the server's and uvicorn's included, in the one format (server/log_format.py).
        logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
        debug = settings.log_level == "debug"
        if args.command == "serve":
            _serve(settings)
        elif args.command == "demo":
            asyncio.run(_demo(args, settings))
        else:
            asyncio.run(run_admin(args, settings))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        if debug:
            traceback.print_exception(exc)
        sys.exit(_report(exc))


def _report(exc: Exception) -> int:
    """Print the one line that says what went wrong; the exit code of its kind (admin.exits.Exit)."""
    if isinstance(exc, CommandError | InvalidSettingError):
        code, message = exc.exit, exc.message
    elif isinstance(exc, MedstreamError):
        code, message = Exit.FAILED, exc.message
    else:
        code = Exit.INTERNAL
        message = f"unexpected error: {type(exc).__name__}: {exc} (`--log-level debug` prints its traceback)"
    print(f"medstream: {message}", file=sys.stderr)
    return int(code)
