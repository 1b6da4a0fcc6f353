"""Port <-> service names and the most common TCP ports, for ``tcpcli probe``.

``TOP_PORTS`` starts with nmap's 100 most frequently open TCP ports (nmap-services,
frequency order, as of nmap 7.9x), followed by the data stores and brokers the Workers
brief names (Redis, MongoDB, MQTT, ...). ``--top N`` takes the first N; beyond this list
it continues with the remaining ports in numeric order. Bundled so that results do not
depend on the machine's /etc/services.
"""

from __future__ import annotations

from typing import Final

#: Retrieved/checked: 2025-01 (nmap-services frequency order, first 100 entries).
TOP_PORTS: Final[tuple[int, ...]] = (
    80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995,
    993, 5900, 1025, 587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179,
    1026, 2000, 8443, 8000, 32768, 554, 26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666,
    646, 5000, 5631, 631, 49153, 8081, 2049, 88, 79, 5800, 106, 2121, 1110, 49155, 6000, 513,
    990, 5357, 427, 49156, 543, 544, 5101, 144, 7, 389, 8009, 3128, 444, 9999, 5009, 7070,
    5190, 3000, 5432, 1900, 3986, 13, 1029, 9, 5051, 6646, 49157, 1028, 873, 1755, 2717,
    4899, 9100, 119, 37,
    # What Workers talk to (the brief's databases, caches and brokers).
    6379, 27017, 1883, 8883, 11211, 5672, 9200, 9092, 2181, 5984, 7000, 8086, 26257, 4222,
    6432, 1521, 9042, 15672, 2379, 8500,
)

#: Service name -> port. Names are what people type (``--ports ssh,redis``).
SERVICES: Final[dict[str, int]] = {
    "echo": 7, "discard": 9, "daytime": 13, "ftp-data": 20, "ftp": 21, "ssh": 22,
    "telnet": 23, "smtp": 25, "dns": 53, "domain": 53, "http": 80, "kerberos": 88,
    "pop3": 110, "sunrpc": 111, "ident": 113, "nntp": 119, "msrpc": 135, "netbios-ssn": 139,
    "imap": 143, "bgp": 179, "ldap": 389, "https": 443, "microsoft-ds": 445, "smb": 445,
    "smtps": 465, "submissions": 465, "submission": 587, "ipp": 631, "ldaps": 636,
    "rsync": 873, "ftps": 990, "imaps": 993, "pop3s": 995, "socks": 1080, "mssql": 1433,
    "oracle": 1521, "pptp": 1723, "mqtt": 1883, "nfs": 2049, "zookeeper": 2181,
    "etcd": 2379, "mysql": 3306, "rdp": 3389, "ms-wbt-server": 3389, "nats": 4222,
    "sip": 5060, "postgresql": 5432, "postgres": 5432, "amqp": 5672, "vnc": 5900,
    "couchdb": 5984, "x11": 6000, "pgbouncer": 6432, "redis": 6379, "cassandra": 9042,
    "http-alt": 8080, "https-alt": 8443, "consul": 8500, "influxdb": 8086, "mqtts": 8883,
    "kafka": 9092, "elasticsearch": 9200, "memcached": 11211, "rabbitmq-management": 15672,
    "cockroachdb": 26257, "mongodb": 27017,
}

#: Port -> the name shown in results (the first name listed for it above).
PORT_NAMES: Final[dict[int, str]] = {}
for _name, _port in SERVICES.items():
    PORT_NAMES.setdefault(_port, _name)


def service_port(name: str) -> int | None:
    """The port for a service name (bundled table first, then the system's services)."""
    key = name.strip().lower()
    if key in SERVICES:
        return SERVICES[key]
    import socket

    try:
        return socket.getservbyname(key, "tcp")
    except OSError:
        return None


def port_name(port: int) -> str:
    """The conventional service on ``port``, or "" (a guess by number, not a finding)."""
    return PORT_NAMES.get(port, "")


def top_ports(count: int) -> list[int]:
    """The ``count`` most common ports; past the bundled list, the rest in numeric order."""
    chosen = list(TOP_PORTS[:count])
    if count > len(chosen):
        seen = set(chosen)
        for port in range(1, 65536):
            if len(chosen) >= count:
                break
            if port not in seen:
                chosen.append(port)
    return chosen
