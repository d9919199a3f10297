"""free_port: distinct ports that can be listened on, however many a run asks for."""

from __future__ import annotations

import socket

from loadtest.ports import free_port


def test_ports_are_never_handed_out_twice_and_each_can_be_bound() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    for port in ports[:20]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
            s.listen()
