"""The command line of the admin commands (`user ...`, `backup`, `check`) and what each runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medstream.admin import backup, check, users
from medstream.admin.environment import USER_PASSWORD_VARIABLE
from medstream.server.settings import Settings

_DATABASE_HELP = "the database, as for serve (default: MEDSTREAM_DATABASE_URL, else sqlite:///./medstream.db)"


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `user`, `backup` and `check` to `commands` (the subparsers of `medstream`); `common` holds the options
    of the logging settings (`--log-level`, `--log-format`), which every command has. `check` gets the settings'
    options from `medstream` itself (as `serve` does)."""
    user = commands.add_parser("user", help="manage users directly in the database")
    user_commands = user.add_subparsers(dest="user_command", required=True)

    def user_command(name: str, help_: str, *, login: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = user_commands.add_parser(name, help=help_, parents=[common])
        parser.add_argument("--database", default=None, help=_DATABASE_HELP)
        if login:
            parser.add_argument("login", help="the user's login")
        return parser

    add = user_command("add", "create a user", login=False)
    add.add_argument("--login", required=True)
    add.add_argument("--password", default=None, help=f"prompted for when absent (or {USER_PASSWORD_VARIABLE})")
    add.add_argument("--name", default=None)
    add.add_argument("--admin", action="store_true", help="give the ADMIN role")
    owner = add.add_mutually_exclusive_group()
    owner.add_argument("--healthcare-party-id", default=None, help="the professional the user acts as (must exist)")
    owner.add_argument("--patient-id", default=None, help="the patient the user acts as (must exist)")
    owner.add_argument("--device-id", default=None, help="the medical device the user acts as (must exist)")
    user_command("list", "list the users (tab-separated, with a header line)", login=False)
    password = user_command("set-password", "set a user's password")
    password.add_argument("--password", default=None, help=f"prompted for when absent (or {USER_PASSWORD_VARIABLE})")
    user_command("disable", "refuse the user's logins and end its sessions (it keeps its login)")
    user_command("enable", "let a disabled user log in again")
    user_command("delete", "delete a user (its login becomes free)")

    saved = commands.add_parser(
        "backup", help="copy a SQLite database while servers use it", parents=[common], description=backup.__doc__
    )
    saved.add_argument("--database", default=None, help=_DATABASE_HELP)
    saved.add_argument("path", type=Path, help="the new file to copy the database to")


async def run(args: argparse.Namespace, settings: Settings) -> None:
    """Run the admin command `args` names, on the database of `settings`; print what it did."""
    url = settings.database_url
    if args.command == "backup":
        print(backup.backup(url, args.path))
    elif args.command == "check":
        await check.check(settings, print)
    elif args.user_command == "add":
        owner = {field: getattr(args, field) for field in users.OWNER_KINDS}
        print(
            await users.add_user(
                url, login=args.login, password=args.password, name=args.name, admin=args.admin, owner=owner
            )
        )
    elif args.user_command == "list":
        for line in await users.list_users(url):
            print(line)
    elif args.user_command == "set-password":
        print(await users.set_password(url, args.login, args.password))
    elif args.user_command in {"disable", "enable"}:
        print(await users.set_disabled(url, args.login, disabled=args.user_command == "disable"))
    elif args.user_command == "delete":
        print(await users.delete_user(url, args.login))
