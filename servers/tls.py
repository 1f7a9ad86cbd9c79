"""Throwaway TLS material for tests that run real redis-server processes with TLS.

Why generate rather than commit certificates: committed keys expire, get copied into real
deployments, and cannot prove "wrong CA" without a second CA anyway. Everything here is made
fresh per test run by the ``openssl`` command line tool (the ``cryptography`` package is not a
dependency of this project), uses small fast EC P-256 keys, and is valid for two days only.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers.topology import TlsFiles

VALID_DAYS = 2
"""Long enough for any test session, short enough that a leaked key is soon worthless."""

_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
"""P-256 keys: generated in milliseconds, where RSA-2048 takes a noticeable fraction of a second."""

_NAME = re.compile(r"[A-Za-z0-9.:\-]+")

_REQ_CONFIG = """\
# Self-contained, so the system openssl.cnf cannot change what is generated.
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
# clientAuth too: redis presents its server certificate as a client certificate on replication
# and cluster-bus links, and the topology's admin client reuses it as well.
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


class TlsError(RuntimeError):
    """The certificates could not be generated; the message names the openssl step."""


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

    Both leaf certificates carry ``common_name`` as CN and the SANs IP:127.0.0.1 and
    DNS:localhost (plus ``common_name`` itself), because clients verify the host name against
    the SANs, not the CN. Raises `TlsError` if openssl is missing or fails.
    """
    if not _NAME.fullmatch(common_name):
        raise TlsError(f"common_name must be a host name or IP address, not {common_name!r}")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("openssl not found: apt-get install openssl")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl-req.cnf"
    config.write_text(_REQ_CONFIG.format(san=_subject_alt_names(common_name)), encoding="utf-8")

    def run(step: str, *args: str) -> None:
        try:
            result = subprocess.run(
                [openssl, *args],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TlsError(f"openssl hung while creating the {step}") from exc
        if result.returncode != 0:
            detail = " | ".join(result.stderr.strip().splitlines()[-4:])
            raise TlsError(f"openssl failed to create the {step}: {detail}")

    def make_ca(name: str, subject: str) -> tuple[Path, Path]:
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        run(
            name, "req", "-x509", "-new", "-config", str(config), "-extensions", "ca_ext",
            *_EC_KEY, "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", str(VALID_DAYS), "-subj", subject,
        )  # fmt: skip
        return cert, key

    def make_leaf(name: str, extensions: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
        cert, key, csr = (directory / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
        # A random serial (no .srl file): regenerating into one directory never reuses one.
        run(
            f"{name} key", "req", "-new", "-config", str(config), *_EC_KEY, "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={common_name}",
        )  # fmt: skip
        run(
            f"{name} certificate", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]),
            "-CAkey", str(ca[1]), "-set_serial", f"0x{secrets.token_hex(16)}",
            "-days", str(VALID_DAYS), "-extfile", str(config), "-extensions", extensions,
            "-out", str(cert),
        )  # fmt: skip
        csr.unlink()
        return cert, key

    ca = make_ca("ca", "/CN=timerlab throwaway CA")
    server = make_leaf("server", "server_ext", ca)
    client = make_leaf("client", "client_ext", ca)
    other = make_ca("other-ca", "/CN=timerlab unrelated CA")
    return TlsBundle(
        directory=directory,
        ca_cert=ca[0],
        ca_key=ca[1],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        other_ca_cert=other[0],
        other_ca_key=other[1],
    )


def _subject_alt_names(common_name: str) -> str:
    """IP:127.0.0.1 and DNS:localhost always; ``common_name`` as well when it is another name."""
    names = ["IP:127.0.0.1", "DNS:localhost"]
    try:
        extra = f"IP:{ipaddress.ip_address(common_name)}"
    except ValueError:
        extra = f"DNS:{common_name}"
    if extra not in names:
        names.append(extra)
    return ", ".join(names)
