"""``amly auth``: save an access token as a named profile (file mode 0600), show or delete it.

The token is checked with ``GET /me`` before it is saved. On the command line a token is
visible to other users of the machine (process lists, shell history): prefer
``--token-file FILE`` or ``--token -`` (stdin); ``--token VALUE`` works but warns.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from ..config import Secret
from ..errors import UsageError
from ._common import run_async
from ._options import add_output_options

EPILOG = """examples:
  amly auth --token -  < token.txt                # save the default profile from stdin
  amly auth --email me@example.org                # log in (password prompted)
  amly auth --profile work --token-file ~/work.token
  amly auth --show                                # profiles, tokens masked
  amly auth --profile work --delete
  amly auth --service panoramax --api-url https://panoramax.example.org --token - < pmx.token
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "auth",
        help="save an access token (profile), show or delete profiles",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", default="default", help="profile name (default: default)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--token", help="the access token; '-' reads it from stdin")
    src.add_argument("--token-file", metavar="FILE", help="read the token from FILE")
    src.add_argument(
        "--email",
        help="log in with this email (password from --password, MAPILLARY_PASSWORD, or a prompt)",
    )
    p.add_argument("--password", help="with --email: the password ('-' reads it from stdin)")
    p.add_argument(
        "--endpoint", metavar="URL", help="an amly server base URL [MAPILLARY_GRAPH_API_ENDPOINT]"
    )
    p.add_argument("--no-verify", action="store_true", help="save without checking with /me")
    p.add_argument(
        "--service",
        choices=("mapillary", "panoramax"),
        default="mapillary",
        help="whose token this is [mapillary]; a Panoramax token also needs --api-url",
    )
    p.add_argument("--api-url", metavar="URL", help="with --service panoramax: the instance")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--show", action="store_true", help="list the saved profiles (masked)")
    act.add_argument("--delete", action="store_true", help="delete the profile")
    add_output_options(p)
    p.set_defaults(func=run)


def _stdin_line(what: str) -> str:
    line = sys.stdin.readline().strip()
    if not line:
        raise UsageError(f"no {what} on stdin")
    return line


def _token_from(args: argparse.Namespace) -> Secret | None:
    if args.token == "-":
        return Secret(_stdin_line("token"))
    if args.token:
        print(
            "amly auth: warning: a token on the command line is visible to other users of "
            "this machine; prefer --token-file FILE or --token - (stdin)",
            file=sys.stderr,
        )
        return Secret(args.token)
    if args.token_file:
        try:
            text = open(args.token_file, encoding="utf-8").read().strip()
        except OSError as e:
            raise UsageError(f"cannot read {args.token_file}: {e.strerror}") from None
        if not text:
            raise UsageError(f"{args.token_file} is empty")
        return Secret(text)
    return None


def _password(args: argparse.Namespace) -> Secret:
    if args.password == "-":
        return Secret(_stdin_line("password"))
    if args.password:
        return Secret(args.password)
    if env := os.environ.get("MAPILLARY_PASSWORD"):
        return Secret(env)
    if sys.stdin.isatty():
        return Secret(getpass.getpass(f"Password for {args.email}: "))
    return Secret(_stdin_line("password"))


def _show(args: argparse.Namespace) -> int:
    from ..services.mapillary import auth

    profiles = auth.load_profiles()
    rows = [
        {
            "profile": name,
            "username": p.get("username"),
            "user_id": p.get("user_id"),
            "token": auth.mask(p["token"]) if p.get("token") else None,
            "endpoint": p.get("endpoint"),
        }
        for name, p in sorted(profiles.items())
    ]
    env = bool(os.environ.get("MAPILLARY_ACCESS_TOKEN"))
    if args.json:
        print(
            json.dumps(
                {"file": str(auth.profiles_path()), "profiles": rows, "env_token": env}, indent=2
            )
        )
        return 0
    if not rows:
        print(f"no saved profiles ({auth.profiles_path()})")
    for r in rows:
        where = f" at {r['endpoint']}" if r["endpoint"] else ""
        print(
            f"{r['profile']}: {r['username'] or '?'} (id {r['user_id'] or '?'}) "
            f"token {r['token']}{where}"
        )
    if env:
        print("note: MAPILLARY_ACCESS_TOKEN is set and takes precedence over profiles")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..client import Client
    from ..services.mapillary import auth

    if args.show:
        return _show(args)
    if args.service == "panoramax":
        return _panoramax(args)
    if args.delete:
        if not auth.delete_profile(args.profile):
            raise UsageError(f"no saved profile {args.profile!r}")
        if not args.quiet:
            print(f"deleted profile {args.profile!r}", file=sys.stderr)
        return 0
    token = _token_from(args)
    password = _password(args) if token is None and args.email else None
    if token is None and password is None:
        if not sys.stdin.isatty():
            raise UsageError("no token given", hint="use --token -, --token-file FILE or --email")
        token = Secret(getpass.getpass("Access token: "))

    async def check() -> tuple[Secret, dict[str, Any]]:
        # The same door as every verb: the Client's transport, retry policy and errors.
        async with Client(args.endpoint, token, journal=False) as client:
            user: dict[str, Any] = {}
            if password is not None:
                new, user_id = await client.login(args.email, password)
                user["id"] = user_id
            else:
                assert token is not None
                new = token
            if not args.no_verify:
                user = await client.me()
            return new, user

    token, user = run_async(check())
    path = auth.save_profile(
        args.profile,
        token,
        user_id=user.get("id"),
        username=user.get("username"),
        endpoint=args.endpoint,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "profile": args.profile,
                    "file": str(path),
                    "user_id": user.get("id"),
                    "username": user.get("username"),
                    "token": str(token),
                },
                indent=2,
            )
        )
    elif not args.quiet:
        who = f"{user.get('username') or '?'} (id {user.get('id') or '?'})" if user else "?"
        print(
            f"saved profile {args.profile!r} for {who}, token {token}, in {path}", file=sys.stderr
        )
    return 0


def _panoramax(args: argparse.Namespace) -> int:
    """``--service panoramax``: a Panoramax token for one instance, checked with
    ``/api/users/me`` and saved as profile ``panoramax:NAME`` (same 0600 file)."""
    from ..client import Client
    from ..services import panoramax
    from ..services.mapillary import auth

    name = panoramax.profile_name(args.profile)
    if args.delete:
        if not auth.delete_profile(name):
            raise UsageError(f"no saved profile {name!r}")
        if not args.quiet:
            print(f"deleted profile {name!r}", file=sys.stderr)
        return 0
    if not args.api_url:
        raise UsageError("--service panoramax needs --api-url URL (the instance)")
    if args.email:
        raise UsageError("Panoramax tokens come from the instance's web page, not --email")
    token = _token_from(args)
    if token is None:
        if not sys.stdin.isatty():
            raise UsageError("no token given", hint="use --token - or --token-file FILE")
        token = Secret(getpass.getpass("Panoramax token: "))

    async def check() -> dict[str, Any]:
        async with Client(journal=False) as client:
            target = client.panoramax_target(args.api_url, token)
            await target.api.configuration()
            return dict(await target.api.me() or {})

    user = {} if args.no_verify else run_async(check())
    path = auth.save_profile(
        name, token, user_id=user.get("id"), username=user.get("name"), endpoint=args.api_url
    )
    if args.json:
        print(
            json.dumps(
                {
                    "profile": name,
                    "file": str(path),
                    "user_id": user.get("id"),
                    "username": user.get("name"),
                    "token": str(token),
                },
                indent=2,
            )
        )
    elif not args.quiet:
        print(
            f"saved profile {name!r} for {user.get('name') or '?'} at {args.api_url}, "
            f"token {token}, in {path}",
            file=sys.stderr,
        )
    return 0
