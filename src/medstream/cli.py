"""`medstream serve | demo | user add`: the command line (also `python -m medstream`)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys

import pydantic
from pydantic_settings import CliSettingsSource, SettingsError

from medstream import __version__
from medstream.errors import MedstreamError, ValidationError
from medstream.server.settings import ENV_PREFIX, Settings, describe_settings_error


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medstream", description="Medical data with live entity events.")
    parser.add_argument("--version", action="version", version=f"medstream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server", description=_SETTINGS_HELP)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(settings_source=_server_options(serve))

    demo = commands.add_parser(
        "demo", help="run the server and drive the seed scenario through the SDK", description=_SETTINGS_HELP
    )
    demo.add_argument("--exit", action="store_true", help="stop the server once the scenario is done")
    demo.set_defaults(settings_source=_server_options(demo))

    user = commands.add_parser("user", help="manage users directly in the database")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="create a user")
    add.add_argument("--database", default=None, help="as for serve")
    add.add_argument("--login", required=True)
    add.add_argument("--password", default=None, help="prompted for when absent (or MEDSTREAM_USER_PASSWORD)")
    add.add_argument("--name", default=None)
    add.add_argument("--admin", action="store_true", help="give the ADMIN role")
    owner = add.add_mutually_exclusive_group()
    owner.add_argument("--healthcare-party-id", default=None, help="the professional the user acts as")
    owner.add_argument("--patient-id", default=None, help="the patient the user acts as")
    owner.add_argument("--device-id", default=None, help="the medical device the user acts as")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of `serve` and `demo` from their flags over the environment; for `user add`, its --database
    over the environment. A value that is not valid is one line naming the setting, as a MedstreamError."""
    try:
        source: CliSettingsSource[Settings] | None = getattr(args, "settings_source", None)
        if source is not None:
            return Settings(_cli_settings_source=source(parsed_args=args))
        return Settings(**({"database_url": args.database} if args.database else {}))
    except (pydantic.ValidationError, SettingsError) as exc:
        raise ValidationError(describe_settings_error(exc)) from None


def _serve(args: argparse.Namespace) -> None:
    from medstream.server.runner import make_server

    server = make_server(_settings(args), log_level=args.log_level, freeze_gc=True)
    try:
        import uvloop  # uvicorn[standard] brings it on Linux and macOS
    except ImportError:  # pragma: no cover - Windows
        asyncio.run(server.serve())
    else:
        uvloop.run(server.serve())


async def _add_user(args: argparse.Namespace) -> None:
    from medstream.model.entities import KIND_BY_NAME
    from medstream.model.user import User
    from medstream.server.app import SYSTEM_ACTOR, open_state
    from medstream.server.routes.entities import write_entities

    password = args.password or os.environ.get("MEDSTREAM_USER_PASSWORD") or getpass.getpass("password: ")
    try:
        user = User(
            login=args.login,
            name=args.name,
            password=password,
            roles={"ADMIN"} if args.admin else set(),
            healthcare_party_id=args.healthcare_party_id,
            patient_id=args.patient_id,
            device_id=args.device_id,
        )
    except pydantic.ValidationError as exc:  # the User hides its input: no password is echoed
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'user'}: {e['msg']}" for e in exc.errors())
        raise ValidationError(f"invalid user: {problems}") from None
    state = await open_state(_settings(args))
    try:
        (stored,) = await write_entities(state, KIND_BY_NAME["User"], [user], SYSTEM_ACTOR)
        print(f"created user {args.login} ({stored.entity.id})")
    finally:
        await state.database.close()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            _serve(args)
        elif args.command == "demo":
            from medstream.demo import run_demo

            asyncio.run(run_demo(_settings(args), keep_serving=not args.exit))
        elif args.command == "user":
            asyncio.run(_add_user(args))
    except MedstreamError as exc:
        sys.exit(f"medstream: {exc.message}")
    except KeyboardInterrupt:
        pass
