"""Throwaway TLS material for tests and load runs that start real redis-server processes with TLS.

Why generate rather than commit certificates: committed keys expire, get copied into real
deployments, and cannot prove "wrong CA" without a second CA anyway. Everything here is made
fresh per run with `trustme` (a library made for exactly this), uses small fast EC P-256 keys,
and is valid for two days only.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from servers.nodes import TlsFiles

VALID_DAYS = 2
"""Long enough for any test session, short enough that a leaked key is soon worthless."""

_NAME = re.compile(r"[A-Za-z0-9.:\-]+")


class TlsError(RuntimeError):
    """The certificates could not be generated."""


@dataclass(frozen=True)
class TlsBundle:
    """Paths of one generated set: a CA, a server and a client pair it signed, and a stranger CA.

    ``other_ca_cert`` signed nothing here: a client that trusts only it must refuse the server,
    which is how tests prove that certificate verification is really on.
    """

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path
    other_ca_key: Path

    def server_files(self) -> TlsFiles:
        """What ``servers.topology`` needs to start TLS-only nodes trusting this CA."""
        return TlsFiles(ca_cert=self.ca_cert, cert=self.server_cert, key=self.server_key)

    def store_options(
        self, *, ca_cert: Path | None = None, client_cert: bool = True
    ) -> dict[str, Any]:
        """The ``timer_store`` TLS keys for a client of this bundle's servers.

        ``ca_cert`` overrides the trusted CA (pass ``other_ca_cert`` to provoke a verify
        failure); ``client_cert=False`` leaves the client certificate out.
        """
        options: dict[str, Any] = {
            "use_ssl": True,
            "ssl_ca_certs": str(ca_cert or self.ca_cert),
        }
        if client_cert:
            options.update(ssl_certfile=str(self.client_cert), ssl_keyfile=str(self.client_key))
        return options


def generate_tls(directory: Path, *, common_name: str = "127.0.0.1") -> TlsBundle:
    """Create a CA, a server and a client certificate signed by it, and an unrelated CA.

    Both leaf certificates carry ``common_name`` as CN and the SANs 127.0.0.1 and localhost
    (plus ``common_name`` itself), because clients verify the host name against the SANs, not
    the CN; both may authenticate either side (redis presents its server certificate as a
    client certificate on replication and cluster-bus links).
    """
    if not _NAME.fullmatch(common_name):
        raise TlsError(f"common_name must be a host name or IP address, not {common_name!r}")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)
    names = _identities(common_name)
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert(*names, common_name=common_name, not_before=start, not_after=end)
    client = ca.issue_cert(*names, common_name=common_name, not_before=start, not_after=end)

    def write(name: str, blob: trustme.Blob) -> Path:
        path = directory / name
        blob.write_to_path(str(path))
        path.chmod(0o600 if name.endswith(".key") else 0o644)
        return path

    return TlsBundle(
        directory=directory,
        ca_cert=write("ca.crt", ca.cert_pem),
        ca_key=write("ca.key", ca.private_key_pem),
        server_cert=write("server.crt", server.cert_chain_pems[0]),
        server_key=write("server.key", server.private_key_pem),
        client_cert=write("client.crt", client.cert_chain_pems[0]),
        client_key=write("client.key", client.private_key_pem),
        other_ca_cert=write("other-ca.crt", other.cert_pem),
        other_ca_key=write("other-ca.key", other.private_key_pem),
    )


def _identities(common_name: str) -> list[str]:
    """127.0.0.1 and localhost always; ``common_name`` as well when it is another name."""
    names = ["127.0.0.1", "localhost"]
    try:
        name = str(ipaddress.ip_address(common_name))
    except ValueError:
        name = common_name
    if name not in names:
        names.append(name)
    return names
