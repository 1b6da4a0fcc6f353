"""Run the tcpcli CLI with every dial recorded: ``python -m tests.support.recording_cli LOG ARGS``.

Two records go to LOG (JSON Lines), so a test can prove the CLI has one checked path:

* ``{"via": "connector", ...}``: each dial through the ``Connector`` seam (``connect_tcp``,
  and ``start_connect`` for the scanner's batched connects), with the address and port;
* ``{"via": "socket", ...}``: each ``connect()``/``connect_ex()`` any socket of the process
  makes, and ``{"via": "getaddrinfo", ...}`` for each system name lookup.

A socket connect that no connector dial stands behind is a dial around the seam.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

from tcpcli.core.connect import SystemConnector


def main() -> None:
    log_path, args = sys.argv[1], sys.argv[2:]
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def record(via: str, address: object, port: object) -> None:
        log.write(json.dumps({"via": via, "address": str(address), "port": port}) + "\n")

    connect_tcp = SystemConnector.connect_tcp
    start_connect = SystemConnector.start_connect

    async def recorded_connect_tcp(self: SystemConnector, host: Any, port: int, *,
                                   local_address: str | None = None) -> Any:
        record("connector", host, port)
        return await connect_tcp(self, host, port, local_address=local_address)

    def recorded_start_connect(self: SystemConnector, host: Any, port: int, *,
                               local_address: str | None = None,
                               reuse: socket.socket | None = None) -> Any:
        record("connector", host, port)
        return start_connect(self, host, port, local_address=local_address, reuse=reuse)

    sock_connect, sock_connect_ex = socket.socket.connect, socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def recorded_sock_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            record("socket", address[0], address[1])
        sock_connect(self, address)

    def recorded_sock_connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            record("socket", address[0], address[1])
        return sock_connect_ex(self, address)

    def recorded_getaddrinfo(host: Any, port: Any, *rest: Any, **kwargs: Any) -> Any:
        record("getaddrinfo", host, port)
        return getaddrinfo(host, port, *rest, **kwargs)

    SystemConnector.connect_tcp = recorded_connect_tcp  # type: ignore[method-assign]
    SystemConnector.start_connect = recorded_start_connect  # type: ignore[method-assign]
    socket.socket.connect = recorded_sock_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = recorded_sock_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = recorded_getaddrinfo

    from tcpcli.cli.main import main as tcpcli_main

    tcpcli_main(args)


if __name__ == "__main__":
    main()
