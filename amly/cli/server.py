"""``amly server``: run the local Mapillary-compatible server (and ``amly server seed``).

Loopback only unless ``--public``: it is a test double and a demo, not a public service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import socket
import sys
from typing import Any

from ..errors import UsageError
from ._common import run_async
from ._options import add_output_options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "server",
        help="run the local Mapillary-compatible server",
        description="Serve the Graph API, the upload service and tiles over a data directory, "
        "on 127.0.0.1 by default. Prints the base URL and the access token.",
    )
    p.add_argument("--data", metavar="DIR", help="data directory (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (0 = any free port)")
    p.add_argument("--public", action="store_true", help="allow binding a non-loopback address")
    p.add_argument(
        "--token",
        help="access token of the default user 'amly-user' (default: the stored one, or a "
        "new random one); '-' reads it from stdin",
    )
    g = p.add_argument_group("users")
    g.add_argument("--add-user", metavar="NAME", help="create or update a user, then exit")
    g.add_argument("--email", help="with --add-user: the login email")
    g.add_argument(
        "--password", help="with --add-user: the login password ('-' reads it from stdin)"
    )
    o = p.add_argument_group("organizations")
    o.add_argument(
        "--add-org",
        metavar="NAME",
        help="create (or rename, with --org-id) an organization, print its id, then exit",
    )
    o.add_argument("--org-id", metavar="ID", help="with --add-org: its id (digits; default new)")
    f = p.add_argument_group("fault injection")
    f.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    f.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 5xx")
    f.add_argument(
        "--drop-after-bytes", type=int, help="drop upload connections after N body bytes"
    )
    f.add_argument("--rate-limit-every", type=int, default=0, help="every N-th request: 429")
    f.add_argument("--search-timeout-rate", type=float, default=0.0, help="searches: 400 3404014")
    f.add_argument("--fault-seed", type=int, default=0, help="seed of the fault generator")
    add_output_options(p)
    p.set_defaults(func=run, server_parser=p)
    try:
        from ..server import seed
    except ModuleNotFoundError as e:  # only while the seeder is being written
        if e.name != "amly.server.seed":
            raise
    else:
        sub = p.add_subparsers(dest="server_command", metavar="COMMAND")
        sub.required = False
        seed.register_cli(sub)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names only loopback addresses.

    >>> _is_loopback("127.0.0.1"), _is_loopback("::1"), _is_loopback("0.0.0.0")
    (True, True, False)
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _read_secret(value: str | None, what: str) -> str | None:
    if value == "-":
        line = sys.stdin.readline().strip()
        if not line:
            raise UsageError(f"no {what} on stdin")
        return line
    return value


def run(args: argparse.Namespace) -> int:
    from ..server.auth import ensure_user
    from ..server.faults import Faults
    from ..server.store import Store

    if not args.data:
        raise UsageError("--data DIR is required", hint="amly server --data ./srv")
    if args.org_id is not None and not args.add_org:
        raise UsageError("--org-id goes with --add-org NAME")
    store = Store(args.data)
    if args.add_org:
        return _add_org(store, args)
    if args.add_user:
        password = _read_secret(args.password, "password")
        user_id = ensure_user(store, args.add_user, email=args.email, password=password)
        if not args.quiet:
            print(f"user {args.add_user}: id {user_id}")
        store.close()
        return 0
    if not _is_loopback(args.host):
        if not args.public:
            store.close()
            raise UsageError(
                f"refusing to bind {args.host}: not a loopback address",
                hint="add --public to serve other machines (anyone who can reach it and has "
                "the token can upload)",
            )
        print(
            f"amly server: WARNING: serving on {args.host}, reachable from other machines",
            file=sys.stderr,
        )
    token = _read_secret(args.token, "token")
    if args.token and args.token != "-":
        print(
            "amly server: warning: a --token on the command line is visible to other users "
            "of this machine; prefer '--token -' (stdin)",
            file=sys.stderr,
        )
    faults = Faults(
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        drop_after_bytes=args.drop_after_bytes,
        rate_limit_every=args.rate_limit_every,
        search_timeout_rate=args.search_timeout_rate,
        seed=args.fault_seed,
    )
    try:
        run_async(_serve(store, args, token, faults))
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    if not args.quiet:
        print("amly server: stopped", file=sys.stderr)
    return 0


def _add_org(store: Any, args: argparse.Namespace) -> int:
    """``--add-org NAME [--org-id ID]``: the organization an upload can name with its id."""
    try:
        org_id = store.add_organization(args.add_org, org_id=args.org_id)
        row = store.organization(org_id)
    except ValueError as e:
        raise UsageError(str(e), hint="amly server --data DIR --add-org NAME --org-id 123") from e
    finally:
        store.close()
    if args.json:
        import json

        print(json.dumps({"organization": dict(row)}))
    elif not args.quiet:
        print(f"organization {row['name']}: id {row['id']}")
    return 0


async def _serve(store: Any, args: argparse.Namespace, token: str | None, faults: Any) -> None:
    from ..server.app import TOKEN_KEY, create_app
    from ..server.testing import serve

    app = create_app(store, token=token, faults=faults)
    runner, url = await serve(app, args.host, args.port)
    try:
        if args.json:
            import json

            print(json.dumps({"url": url, "token": app[TOKEN_KEY]}), flush=True)
        else:
            print(f"amly server: {url}", flush=True)
            print(f"token: {app[TOKEN_KEY]}", flush=True)
            print(f"  export MAPILLARY_GRAPH_API_ENDPOINT={url}", flush=True)
            print(f"  export MAPILLARY_UPLOAD_ENDPOINT={url}/upload", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
