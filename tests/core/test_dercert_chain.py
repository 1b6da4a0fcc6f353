"""The DER reader's chain completeness is tlsverify's, for every chain and verified chain.

``dercert.chain_completeness`` settles a chain itself only when the server sent the
verified chain (with or without its anchor) and its anchor is self-signed; anything else
goes to ``tlsverify.chain_completeness``, the reference. Here both answer every
combination of the chain sent and a chain a verifier could have built, and the tests name
the combinations that must be settled without cryptography.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tcpcli.core import dercert, tlsverify
from tcpcli.core.certgen import throwaway_certificate
from tests.support.certs import same_name_other_key

pytestmark = pytest.mark.timeout(300)


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def judge(sent: Sequence[bytes], verified: Sequence[bytes], ca_file: str) -> (
    tuple[bool | None, str | None]
):
    """Both answers, which must agree; the DER reader's is returned."""
    mine = dercert.chain_completeness(sent, verified, ca_file=ca_file, system_store=False)
    theirs = tlsverify._chain_completeness.__wrapped__(tuple(sent), tuple(verified), ca_file,
                                                       False)
    assert mine == theirs
    return mine


def settled(sent: Sequence[bytes], verified: Sequence[bytes]) -> bool:
    return dercert._settled_chain(tuple(sent), tuple(verified)) is not None


def same_name_other_key_der(pem: bytes) -> bytes:
    """A self-signed CA with the name of ``pem``'s certificate and a key of its own."""
    impostor = same_name_other_key(x509.load_pem_x509_certificate(pem))
    return impostor.public_bytes(serialization.Encoding.DER)


def cross_signed(child_pem: bytes, signer: trustme.CA) -> bytes:
    """``child_pem``'s CA certificate (same name, same key) issued by ``signer`` instead."""
    child = x509.load_pem_x509_certificate(child_pem)
    issuer = x509.load_pem_x509_certificate(signer.cert_pem.bytes())
    return (x509.CertificateBuilder()
            .subject_name(child.subject).issuer_name(issuer.subject)
            .public_key(child.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(child.not_valid_before_utc)
            .not_valid_after(child.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer._private_key, hashes.SHA256())  # (trustme keeps it there)
            .public_bytes(serialization.Encoding.DER))


class Chain:
    """root → intermediate → leaf (trustme), the root as the trust store."""

    def __init__(self, directory: Path, key_type: trustme.KeyType) -> None:
        self.ca = trustme.CA(key_type=key_type)
        self.intermediate = self.ca.create_child_ca(key_type=key_type)
        leaf = self.intermediate.issue_cert("localhost", "127.0.0.1", key_type=key_type)
        self.leaf = der(leaf.cert_chain_pems[0].bytes())
        self.inter = der(self.intermediate.cert_pem.bytes())
        self.root = der(self.ca.cert_pem.bytes())
        self.other = der(trustme.CA().cert_pem.bytes())
        self.ca_file = str(directory / f"root-{key_type.name}.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)


@pytest.fixture(scope="module", params=[trustme.KeyType.ECDSA, trustme.KeyType.RSA])
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return Chain(tmp_path_factory.mktemp("chain"), request.param)


def test_the_verified_chain_sent_is_settled_here(chain: Chain) -> None:
    verified = [chain.leaf, chain.inter, chain.root]
    for sent in ([chain.leaf, chain.inter], verified):
        assert settled(sent, verified)
        assert judge(sent, verified, chain.ca_file) == (True, None)


def test_every_other_combination_is_the_references(chain: Chain) -> None:
    """Every ordered choice of up to three of leaf, intermediate, root, another root and a
    same-name impostor, against each verified chain: the same answer."""
    impostor = same_name_other_key_der(chain.ca.cert_pem.bytes())
    pool = [chain.leaf, chain.inter, chain.root, chain.other, impostor]
    verifieds = [[], [chain.leaf, chain.inter, chain.root], [chain.leaf, chain.root],
                 [chain.leaf]]
    answers = set()
    for size in (1, 2, 3):
        for picked in itertools.permutations(pool[1:], size - 1):
            sent = [chain.leaf, *picked]
            for verified in verifieds:
                answers.add(judge(sent, verified, chain.ca_file))
                if len(verified) < 3:
                    assert not settled(sent, verified)  # (a link missing)
    assert len(answers) > 4  # complete, incomplete, extra, out of order, ...


def test_missing_intermediate_extra_and_out_of_order_go_to_the_reference(chain: Chain) -> None:
    verified = [chain.leaf, chain.inter, chain.root]
    cases = {
        "missing": [chain.leaf],
        "extra": [chain.leaf, chain.inter, chain.other],
        "out-of-order": [chain.leaf, chain.root, chain.inter],
        "twice": [chain.leaf, chain.inter, chain.inter],
    }
    for sent in cases.values():
        assert not settled(sent, verified)
        judge(sent, verified, chain.ca_file)
    assert judge(cases["missing"], verified, chain.ca_file)[0] is False


def test_a_cross_signed_intermediate(chain: Chain, tmp_path: Path) -> None:
    """The intermediate as another root issued it, sent with that root's certificate: the
    store's root is the anchor of the verified chain."""
    other = trustme.CA()
    cross = cross_signed(chain.intermediate.cert_pem.bytes(), other)
    other_root = der(other.cert_pem.bytes())
    for sent, verified in [
        ([chain.leaf, cross], [chain.leaf, chain.inter, chain.root]),
        ([chain.leaf, chain.inter, cross, other_root], [chain.leaf, chain.inter, chain.root]),
        ([chain.leaf, cross, other_root], [chain.leaf, cross, other_root]),
    ]:
        judge(sent, verified, chain.ca_file)
    both = tmp_path / "both.pem"
    both.write_bytes(chain.ca.cert_pem.bytes() + other.cert_pem.bytes())
    assert settled([chain.leaf, cross], [chain.leaf, cross, other_root])
    assert judge([chain.leaf, cross], [chain.leaf, cross, other_root], str(both)) == (True, None)


def test_a_leaf_issued_by_the_root_and_a_self_signed_leaf(tmp_path: Path) -> None:
    made = throwaway_certificate("127.0.0.1")
    leaf, root = der(made.cert_pem), der(made.ca_pem)
    ca_file = made.write_ca(str(tmp_path))
    assert settled([leaf], [leaf, root]) and settled([leaf, root], [leaf, root])
    assert judge([leaf], [leaf, root], ca_file) == (True, None)
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "alone")])
    alone = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(7)
             .not_valid_before(x509.load_der_x509_certificate(leaf).not_valid_before_utc)
             .not_valid_after(x509.load_der_x509_certificate(leaf).not_valid_after_utc)
             .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    assert not settled([alone], [alone])  # (the leaf is its own anchor: the reference's)
    assert judge([alone], [alone], ca_file) == (True, None)


def test_no_chain() -> None:
    assert dercert.chain_completeness([], [], ca_file=None, system_store=False) == (None, None)
