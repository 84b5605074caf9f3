"""WeChat Pay API v3 crypto: the signed-message forms, RSA-SHA256 and AEAD_AES_256_GCM."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
# WeChat Pay sends probe notifications with this signature prefix to check that the merchant
# really verifies signatures; they must be rejected (pay.weixin.qq.com "签名探测流量").
PROBE_SIGNATURE_PREFIX = "WECHATPAY/SIGNTEST/"


def request_message(
    method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    """`METHOD\\nPATH?QUERY\\nTS\\nNONCE\\nBODY\\n`: what a merchant signs for each API call."""
    head = f"{method.upper()}\n{path_and_query}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """`TS\\nNONCE\\nBODY\\n` over raw bytes: signed by WeChat Pay on answers and notifications."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def pay_sign_message(app_id: str, timestamp: str, nonce: str, package: str) -> bytes:
    """`appId\\ntimeStamp\\nnonceStr\\npackage\\n`: what `wx.requestPayment`'s paySign covers."""
    return f"{app_id}\n{timestamp}\n{nonce}\n{package}\n".encode()


def new_nonce() -> str:
    """A 32-character random hex string for nonce_str / Wechatpay-Nonce."""
    return secrets.token_hex(16).upper()


def generate_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key (tests and the fake; real merchant keys come from the platform)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#8 PEM of a private key, as the merchant platform hands out `apiclient_key.pem`."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of the public half."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Load an unencrypted RSA private key (PKCS#8 or PKCS#1 PEM)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("merchant private key must be RSA")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Load an RSA public key from a public-key PEM or an X.509 platform certificate PEM."""
    if b"BEGIN CERTIFICATE" in pem:
        key = x509.load_pem_x509_certificate(pem).public_key()
    else:
        key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("WeChat Pay public key must be RSA")
    return key


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """Base64 RSA-SHA256 PKCS#1 v1.5 signature ("SHA256 with RSA")."""
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """True when `signature_b64` is a valid RSA-SHA256 signature of `message`."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def aead_decrypt(api_v3_key: bytes, nonce: str, associated_data: str, ciphertext_b64: str) -> bytes:
    """AEAD_AES_256_GCM decrypt of a notification `resource`; raises ValueError on any failure."""
    try:
        data = base64.b64decode(ciphertext_b64, validate=True)
        return AESGCM(api_v3_key).decrypt(nonce.encode(), data, associated_data.encode())
    except (InvalidTag, ValueError, TypeError) as exc:
        raise ValueError("resource does not decrypt") from exc


def aead_encrypt(api_v3_key: bytes, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """The inverse of `aead_decrypt` (used by the fake to build notifications)."""
    data = AESGCM(api_v3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return base64.b64encode(data).decode()


def authorization_header(
    *, mchid: str, serial_no: str, nonce: str, timestamp: str, signature: str
) -> str:
    """The `Authorization` value for a signed API v3 request."""
    return (
        f'{AUTH_SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization(value: str) -> dict[str, str] | None:
    """Split an `Authorization` header into its fields, or None when it is not ours."""
    schema, _, rest = value.strip().partition(" ")
    if schema != AUTH_SCHEMA:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, quoted = part.strip().partition("=")
        if not sep or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            return None
        fields[name] = quoted[1:-1]
    return fields


class PublicKeyRing:
    """WeChat Pay verification keys by id: the `PUB_KEY_ID_…` key and platform cert serials."""

    def __init__(self, keys: Mapping[str, rsa.RSAPublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_pems(cls, pems: Mapping[str, bytes]) -> PublicKeyRing:
        """Build from id -> PEM (public key or certificate)."""
        return cls({key_id: load_public_key(pem) for key_id, pem in pems.items()})

    def get(self, key_id: str) -> rsa.RSAPublicKey | None:
        """The key for a `Wechatpay-Serial` value, or None when it is unknown."""
        return self._keys.get(key_id)

    def ids(self) -> list[str]:
        """Every key id known (for diagnostics)."""
        return list(self._keys)
