"""Throw-away credentials for a federation on 127.0.0.1, made fresh by each test run.

A private certificate authority (a self-signed root), a server certificate it signs for
`127.0.0.1`/`localhost` (what the SuperLink presents on its Fleet, Control and Runtime API,
and each SuperNode on its own Runtime API), and one SuperNode key pair per device in the
formats Flower 1.42 reads: the private key in OpenSSH format (`flower-supernode
--auth-supernode-private-key`), the public key as an OpenSSH line (`flwr supernode register`),
both on NIST P-384. Nothing here is committed: keys live in the test's temporary directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    ca_certificate: Path       # the root every client trusts (--root-certificates, root-certificates)
    server_certificate: Path   # signed by the root, for 127.0.0.1 and localhost
    server_key: Path


@dataclasses.dataclass(frozen=True)
class NodeKeys:
    private_key: Path          # OpenSSH private key (stays on the device)
    public_key: Path           # OpenSSH public key line (registered on the SuperLink)


def _write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tflite-transfer test federation"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(folder: Path, hours: int = 2) -> TlsFiles:
    """A root CA and a server certificate for the loopback address, valid for `hours`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=hours)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = _name("test federation root CA")
    ca_certificate = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384()))

    server_key = ec.generate_private_key(ec.SECP384R1())
    server_certificate = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_name)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384()))

    pem = serialization.Encoding.PEM
    files = TlsFiles(folder / "ca.crt", folder / "server.pem", folder / "server.key")
    files.ca_certificate.write_bytes(ca_certificate.public_bytes(pem))
    files.server_certificate.write_bytes(server_certificate.public_bytes(pem))
    _write_private(files.server_key, server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


def make_node_keys(folder: Path, name: str) -> NodeKeys:
    """A SuperNode's P-384 key pair, as `ssh-keygen -t ecdsa -b 384` would write it."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    keys = NodeKeys(folder / name, folder / f"{name}.pub")
    _write_private(keys.private_key, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    keys.public_key.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return keys
