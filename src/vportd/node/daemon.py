"""The ``vportd`` daemon: the composition root of one controller of a vportd cluster.

It reads and validates the configuration (the token files and, with `[tls]`,
the certificates with it: `vportd --check` runs the same checks and stops
there), sets up logging, and runs the `Runtime` (core +
OpenFlow + OVSDB, every task in one `asyncio.TaskGroup`) until SIGTERM or
SIGINT, which cancel the group and wait for every task. With `[tls]` every
channel gets its SSL context from `vportd.node.tls`: the API (https only),
the OpenFlow listener, the OVSDB monitors and the peers' client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import logging
import os
import signal
import sys
from pathlib import Path

from vportd import __version__
from vportd.cluster import etcd_tls
from vportd.cluster.etcd_tls import EtcdTLS
from vportd.cluster.store import StoreError
from vportd.node import tls
from vportd.node.config import Config, ConfigError, load_config
from vportd.node.config_reference import reference
from vportd.node.tokens import read_tokens

log = logging.getLogger("vportd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vportd",
        description=(
            "Run one controller of a vportd cluster: it masters the Open vSwitch "
            "switches that connect to it (OpenFlow 1.3), reads from OVSDB which VM "
            "each port belongs to, keeps the vPort table and installs the flows."
        ),
        epilog="The configuration is TOML; unknown keys and bad values are refused "
        "at start with the key named. See docs/configuration.md and docs/operations.md.",
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="controller configuration file (TOML)"
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the configuration, print it, and exit"
    )
    parser.add_argument(
        "--config-reference",
        action="store_true",
        help="print every configuration key with its type, default and description "
        "(Markdown: docs/configuration.md), and exit",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _logging(config: Config) -> None:
    logging.basicConfig(
        level=config.logging.level.upper(),
        format=f"%(asctime)s {config.controller.id} %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


# Every task is cancelled and awaited on SIGTERM; one that takes longer than this is a
# bug: its stack is logged and the process exits anyway (status EXIT_STUCK).
SHUTDOWN_LIMIT = 15.0
EXIT_STUCK = 70
EXIT_STORE = 1  # etcd's TLS or login refused at start: a configuration to fix


def _stop(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    if not task.cancelling():
        log.info("stopping: cancelling every task")
        loop.call_later(SHUTDOWN_LIMIT, _stuck, loop)
    task.cancel()


def _stuck(loop: asyncio.AbstractEventLoop) -> None:
    """Shutdown did not finish: say which tasks hang, then exit anyway."""
    for t in asyncio.all_tasks(loop):
        stack = io.StringIO()
        t.print_stack(file=stack)
        log.error("still running %gs after the stop: %s\n%s", SHUTDOWN_LIMIT, t, stack.getvalue())
    log.error("shutdown stuck: exiting without waiting for those tasks")
    logging.shutdown()
    os._exit(EXIT_STUCK)


async def _serve(
    config: Config,
    token: str | None,
    peer_token: str | None,
    contexts: tls.Contexts | None,
    *,
    store_tls: EtcdTLS | None,
    etcd_login: tuple[str, str] | None,
) -> int:
    # Imported here: keeps --help and --check light.
    from contextlib import AsyncExitStack  # noqa: PLC0415

    from vportd.api.app import create_app  # noqa: PLC0415
    from vportd.api.server import serve  # noqa: PLC0415
    from vportd.cluster.etcd import EtcdStore  # noqa: PLC0415
    from vportd.cluster.members import Peer  # noqa: PLC0415
    from vportd.cluster.node import ClusterNode  # noqa: PLC0415
    from vportd.cluster.peers import Forwarder, PeerClient  # noqa: PLC0415
    from vportd.cluster.transport import PeerHttp  # noqa: PLC0415
    from vportd.node.runtime import Runtime  # noqa: PLC0415
    from vportd.node.service import ControllerService  # noqa: PLC0415

    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop, loop, task)
    runtime = Runtime(config, tls=contexts)
    me = Peer(config.controller.id, config.api.url)
    # one session for the peer messages and the relayed requests
    http = PeerHttp(tls=None if contexts is None else contexts.peers)
    client = PeerClient(peer_token, timeout=config.api.peer_timeout, http=http)
    forwarder = Forwarder(http=http)
    node, store = None, None
    if config.store.kind == "etcd":
        s = config.store
        store = EtcdStore(list(s.endpoints), s.prefix, s.lease_ttl, tls=store_tls, login=etcd_login)
        node = ClusterNode(
            store, client, me, runtime, openflow=config.openflow.listen, gather=s.write_delay
        )
        runtime.attach(node)
    service = ControllerService(runtime, me, node)
    app = create_app(
        service,
        token=token,
        peer_token=peer_token,
        max_body=config.api.max_body,
        forwarder=forwarder,
    )
    log.info(
        "controller %s starting (OpenFlow %s, API %s, store %s%s%s)",
        me.id, config.openflow.listen, me.api, config.store.kind,
        " over TLS" if store_tls is not None else "", ", TLS" if contexts is not None else "",
    )  # fmt: skip
    # What the imports and the app built lives as long as the process: kept out of
    # the collector's full passes, which then scan the table, not the libraries too.
    gc.collect()
    gc.freeze()
    try:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(client.aclose)
            stack.push_async_callback(forwarder.aclose)
            if store is not None:
                await stack.enter_async_context(store)
            rest = None if contexts is None else contexts.rest
            await runtime.run(lambda: serve(app, config.api.listen, tls=rest))
    except asyncio.CancelledError:
        log.info("controller %s stopped", config.controller.id)
    except StoreError as err:  # (only on the way in: etcd refused our TLS or our login)
        log.error("cannot use etcd: %s", err)
        return EXIT_STORE
    return 0


def _etcd_login(config: Config) -> tuple[str, str] | None:
    """`[store]`'s etcd user and the password from its file; ConfigError if unreadable."""
    s = config.store
    if s.kind != "etcd" or s.username is None or s.password_file is None:
        return None
    try:
        password = s.password_file.read_text().strip()
    except OSError as err:
        why = f"cannot read {s.password_file}: {err.strerror}"
        raise ConfigError(f"store.password_file: {why}") from None
    if not password:
        raise ConfigError(f"store.password_file: {s.password_file} is empty")
    return s.username, password


def _etcd_tls(config: Config) -> EtcdTLS | None:
    """`[store]`'s TLS files, loaded; ConfigError if one cannot be."""
    s = config.store
    if s.kind != "etcd" or s.ca is None:
        return None
    try:
        return etcd_tls.load(s.ca, s.cert, s.key)
    except ValueError as err:
        raise ConfigError(f"store.ca/cert/key: {err}") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config_reference:
        sys.stdout.write(reference())
        return 0
    if args.config is None:
        parser.print_usage(sys.stderr)
        print("vportd: error: --config FILE is required to run a controller", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        token, peer_token = read_tokens(config.api)
        contexts = None if config.tls is None else tls.load(config.tls)
        store_tls = _etcd_tls(config)
        etcd_login = _etcd_login(config)
    except ConfigError as err:
        print(f"vportd: configuration error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print(config.model_dump_json(indent=2))
        return 0
    _logging(config)
    if token is None:
        log.warning("api.token_file is not set: the northbound API refuses every request")
    return asyncio.run(
        _serve(config, token, peer_token, contexts, store_tls=store_tls, etcd_login=etcd_login)
    )


if __name__ == "__main__":
    sys.exit(main())
