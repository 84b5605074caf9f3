"""Settings.from_env(environ): the one place environment variables are read and validated."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class SettingsError(Exception):
    """One or more settings are invalid; the message lists every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))


class Secret:
    """A string that never shows its value in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Option:
    """One environment variable: its name, default, meaning; documented in the README table."""

    env: str
    default: str | None
    help: str
    secret: bool = False


# The README table is generated from this list (docs/settings.md and `python -m settings`).
OPTIONS: tuple[Option, ...] = (
    Option("HOST", "127.0.0.1", "Address the HTTP server listens on."),
    Option("PORT", "8800", "Port the HTTP server listens on (0 = any free port)."),
    Option("MONGODB_URI", "", "MongoDB connection string. Empty: start the embedded FerretDB."),
    Option("MONGODB_DB", "smartproperty", "Database name."),
    Option("STORE_DIR", "var/store", "Embedded store: data directory (SQLite files)."),
    Option("FERRETDB_BIN", "", "Embedded store: path of a ferretdb binary (default: build it)."),
    Option("MAX_BODY_BYTES", "1048576", "Largest accepted request body, bytes (413 above)."),
    Option("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR."),
    Option("SESSION_TTL_SECONDS", "604800", "Lifetime of a mini-program session token."),
    Option("ADMIN_SESSION_TTL_SECONDS", "28800", "Lifetime of a staff session token."),
    Option("LOGIN_MAX_FAILURES", "5", "Staff password failures before the account locks."),
    Option("LOGIN_LOCK_SECONDS", "900", "How long a locked staff account stays locked."),
    Option("WECHAT_API_BASE", "https://api.weixin.qq.com", "WeChat API base URL."),
    Option("WECHAT_APPID", "", "Mini-program appid."),
    Option("WECHAT_SECRET", "", "Mini-program app secret.", secret=True),
    Option("WECHAT_TIMEOUT_SECONDS", "5", "Timeout of one call to WeChat."),
    Option("ID_HASH_KEY", "", "Base64 32-byte key: keyed hash of ID numbers.", secret=True),
    Option(
        "FIELD_ENC_KEY", "", "Base64 32-byte AES-GCM key: phones and WeChat session keys at rest.",
        secret=True,
    ),
    Option("SHUTDOWN_GRACE_SECONDS", "10", "SIGTERM: longest wait for in-flight requests."),
    # Owner e-voting (docs/ballot-bundle.md).
    Option("SIGNING_KEYS_FILE", "",
           "JSON keyring (receipt/checkpoint/result keys, active + retired ids); see docs/keys.md."),
    Option("LOG_ORIGIN", "smartproperty.local",
           "Origin line of ballot checkpoints: a name that identifies this deployment."),
    Option("CHECKPOINT_INTERVAL_SECONDS", "300", "How often an open ballot's log is checkpointed."),
    Option("VOTE_TEMPLATE_ID", "", "Subscribe-message template for vote receipts and reminders."),
    Option("MP_WEB_BASE", "https://mp.smartproperty.local",
           "Base URL a plain QR code points to when no mini-program code can be made."),
    # WeChat Pay API v3 (docs/fees.md). Empty WECHATPAY_MCHID: online payment is off and the
    # payment endpoints answer 503 payment_not_configured; bills and fee items still work.
    Option("WECHATPAY_API_BASE", "https://api.mch.weixin.qq.com", "WeChat Pay API v3 base URL."),
    Option("WECHATPAY_MCHID", "", "Merchant id (商户号). Empty: online payment switched off."),
    Option("WECHATPAY_MERCHANT_SERIAL_NO", "", "Serial number of the merchant API certificate."),
    Option("WECHATPAY_MERCHANT_KEY_FILE", "", "Path of the merchant private key PEM (apiclient_key.pem)."),
    Option("WECHATPAY_API_V3_KEY", "", "The 32-character APIv3 key (decrypts notifications).",
           secret=True),
    Option("WECHATPAY_PUBLIC_KEY_FILE", "", "Path of the WeChat Pay public key PEM."),
    Option("WECHATPAY_PUBLIC_KEY_ID", "", "Id of the WeChat Pay public key (PUB_KEY_ID_...)."),
    Option("WECHATPAY_NOTIFY_BASE", "",
           "Public https origin WeChat Pay posts notifications to (path /api/pay/v1/wechatpay/...)."),
    Option("WECHATPAY_ORDER_TTL_SECONDS", "900", "How long an unpaid order stays payable."),
    Option("WECHATPAY_SWEEP_SECONDS", "60", "Interval of the payment reconciliation sweep."),
    # Disclosures, ratings, complaints, credit (docs/disclosures-ratings-complaints.md).
    Option("DISCLOSURE_SIGNING_KEY", "",
           "Base64 32-byte Ed25519 seed signing disclosures and credit lists (empty: a key is "
           "generated at start and lost on restart; set it in production).", secret=True),
    Option("DISCLOSURE_DEADLINE_DAYS", "15",
           "Days after a quarter ends by which its common-income statement is due."),
    Option("RATING_WINDOW_DAYS", "15", "Days a quarter's service rating stays open after it ends."),
    Option("RATING_DIMENSIONS",
           "cleaning:环境卫生,security:秩序维护,greening:绿化养护,repairs:维修服务,attitude:服务态度",
           "Rating dimensions key:名称, comma separated ('overall' is always added)."),
    Option("COMPLAINT_RESPOND_HOURS", "24", "Hours the handler has to respond to a complaint."),
    Option("COMPLAINT_RESOLVE_HOURS", "120", "Hours from the response to the resolution."),
    Option("COMPLAINT_TEMPLATE_ID", "", "Subscribe-message template for complaint progress."),
    Option("CREDIT_WEIGHTS", "rating=40,response=15,completion=15,satisfaction=15,disclosure=15",
           "Credit score weights (integers summing to 100)."),
    Option("CREDIT_RED_MIN", "90", "Credit score at or above which a company is on the red list."),
    Option("CREDIT_BLACK_BELOW", "60", "Credit score below which a company is on the black list."),
    # City platform integration (docs/integration.md).
    Option("OPEN_API_SKEW_SECONDS", "300",
           "Open API: largest accepted difference between a request's timestamp and ours."),
    Option("OPEN_API_RATE_PER_MINUTE", "120", "Open API: default requests per minute per client."),
    Option("WEBHOOK_RETRY_SCHEDULE", "1,5,30,300,1800,7200",
           "Seconds between webhook attempts, comma separated; after the last: dead-letter list."),
    Option("WEBHOOK_TIMEOUT_SECONDS", "5", "Timeout of one webhook delivery."),
    Option("WEBHOOK_INTERVAL_SECONDS", "2", "How often the webhook delivery job runs."),
    Option("WEBHOOK_ALLOW_HTTP", "false", "Allow plain http:// webhook URLs (tests, intranets)."),
)

_BOOLS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one service process."""

    host: str
    port: int
    mongodb_uri: str = field(repr=False)
    mongodb_db: str
    store_dir: Path
    ferretdb_bin: str
    max_body_bytes: int
    log_level: str
    session_ttl_seconds: int
    admin_session_ttl_seconds: int
    login_max_failures: int
    login_lock_seconds: int
    wechat_api_base: str
    wechat_appid: str
    wechat_secret: Secret
    wechat_timeout_seconds: float
    id_hash_key: Secret
    field_enc_key: Secret
    shutdown_grace_seconds: float
    signing_keys_file: str
    log_origin: str
    checkpoint_interval_seconds: int
    vote_template_id: str
    mp_web_base: str
    wechatpay_api_base: str = "https://api.mch.weixin.qq.com"
    wechatpay_mchid: str = ""
    wechatpay_merchant_serial_no: str = ""
    wechatpay_merchant_key_file: str = ""
    wechatpay_api_v3_key: Secret = Secret("")
    wechatpay_public_key_file: str = ""
    wechatpay_public_key_id: str = ""
    wechatpay_notify_base: str = ""
    wechatpay_order_ttl_seconds: int = 900
    wechatpay_sweep_seconds: int = 60
    disclosure_signing_key: Secret = Secret("")
    disclosure_deadline_days: int = 15
    rating_window_days: int = 15
    rating_dimensions: tuple[tuple[str, str], ...] = ()
    complaint_respond_hours: int = 24
    complaint_resolve_hours: int = 120
    complaint_template_id: str = ""
    credit_weights: tuple[tuple[str, int], ...] = ()
    credit_red_min: int = 90
    credit_black_below: int = 60
    open_api_skew_seconds: int = 300
    open_api_rate_per_minute: int = 120
    webhook_retry_schedule: tuple[int, ...] = (1, 5, 30, 300, 1800, 7200)
    webhook_timeout_seconds: float = 5.0
    webhook_interval_seconds: int = 2
    webhook_allow_http: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every option; collect all problems and raise them together."""
        env = os.environ if environ is None else environ
        raw = {o.env: env.get(o.env, o.default or "") for o in OPTIONS}
        problems: list[str] = []

        def integer(name: str, low: int, high: int) -> int:
            try:
                value = int(raw[name])
            except ValueError:
                problems.append(f"{name} must be an integer, got {raw[name]!r}")
                return low
            if not low <= value <= high:
                problems.append(f"{name} must be between {low} and {high}, got {value}")
            return value

        def url(name: str) -> str:
            parts = urlsplit(raw[name])
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(f"{name} must be an http(s) URL, got {raw[name]!r}")
            return raw[name].rstrip("/")

        def key32(name: str) -> Secret:
            value = raw[name]
            if value:
                try:
                    if len(base64.b64decode(value, validate=True)) != 32:
                        problems.append(f"{name} must decode to exactly 32 bytes")
                except (binascii.Error, ValueError):
                    problems.append(f"{name} must be base64")
            return Secret(value)

        level = raw["LOG_LEVEL"].upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        uri = raw["MONGODB_URI"]
        if uri and not uri.startswith(("mongodb://", "mongodb+srv://")):
            problems.append("MONGODB_URI must start with mongodb:// or mongodb+srv://")
        if not raw["MONGODB_DB"].replace("_", "").isalnum():
            problems.append(f"MONGODB_DB must be letters, digits and _, got {raw['MONGODB_DB']!r}")
        settings = cls(
            host=raw["HOST"],
            port=integer("PORT", 0, 65535),
            mongodb_uri=uri,
            mongodb_db=raw["MONGODB_DB"],
            store_dir=Path(raw["STORE_DIR"]),
            ferretdb_bin=raw["FERRETDB_BIN"],
            max_body_bytes=integer("MAX_BODY_BYTES", 1024, 64 * 1024 * 1024),
            log_level=level,
            session_ttl_seconds=integer("SESSION_TTL_SECONDS", 60, 90 * 86400),
            admin_session_ttl_seconds=integer("ADMIN_SESSION_TTL_SECONDS", 60, 90 * 86400),
            login_max_failures=integer("LOGIN_MAX_FAILURES", 1, 100),
            login_lock_seconds=integer("LOGIN_LOCK_SECONDS", 1, 86400),
            wechat_api_base=url("WECHAT_API_BASE"),
            wechat_appid=raw["WECHAT_APPID"],
            wechat_secret=Secret(raw["WECHAT_SECRET"]),
            wechat_timeout_seconds=float(integer("WECHAT_TIMEOUT_SECONDS", 1, 60)),
            id_hash_key=key32("ID_HASH_KEY"),
            field_enc_key=key32("FIELD_ENC_KEY"),
            shutdown_grace_seconds=float(integer("SHUTDOWN_GRACE_SECONDS", 0, 600)),
            signing_keys_file=raw["SIGNING_KEYS_FILE"],
            log_origin=raw["LOG_ORIGIN"],
            checkpoint_interval_seconds=integer("CHECKPOINT_INTERVAL_SECONDS", 1, 86400),
            vote_template_id=raw["VOTE_TEMPLATE_ID"],
            mp_web_base=url("MP_WEB_BASE"),
            wechatpay_api_base=url("WECHATPAY_API_BASE"),
            wechatpay_mchid=raw["WECHATPAY_MCHID"],
            wechatpay_merchant_serial_no=raw["WECHATPAY_MERCHANT_SERIAL_NO"],
            wechatpay_merchant_key_file=raw["WECHATPAY_MERCHANT_KEY_FILE"],
            wechatpay_api_v3_key=Secret(raw["WECHATPAY_API_V3_KEY"]),
            wechatpay_public_key_file=raw["WECHATPAY_PUBLIC_KEY_FILE"],
            wechatpay_public_key_id=raw["WECHATPAY_PUBLIC_KEY_ID"],
            wechatpay_notify_base=raw["WECHATPAY_NOTIFY_BASE"].rstrip("/"),
            wechatpay_order_ttl_seconds=integer("WECHATPAY_ORDER_TTL_SECONDS", 60, 7200),
            wechatpay_sweep_seconds=integer("WECHATPAY_SWEEP_SECONDS", 5, 3600),
            disclosure_signing_key=key32("DISCLOSURE_SIGNING_KEY"),
            disclosure_deadline_days=integer("DISCLOSURE_DEADLINE_DAYS", 0, 90),
            rating_window_days=integer("RATING_WINDOW_DAYS", 1, 90),
            rating_dimensions=_pairs(raw, "RATING_DIMENSIONS", problems, str),
            complaint_respond_hours=integer("COMPLAINT_RESPOND_HOURS", 1, 24 * 30),
            complaint_resolve_hours=integer("COMPLAINT_RESOLVE_HOURS", 1, 24 * 90),
            complaint_template_id=raw["COMPLAINT_TEMPLATE_ID"],
            credit_weights=_pairs(raw, "CREDIT_WEIGHTS", problems, int),
            credit_red_min=integer("CREDIT_RED_MIN", 0, 100),
            credit_black_below=integer("CREDIT_BLACK_BELOW", 0, 100),
            open_api_skew_seconds=integer("OPEN_API_SKEW_SECONDS", 10, 3600),
            open_api_rate_per_minute=integer("OPEN_API_RATE_PER_MINUTE", 1, 100000),
            webhook_retry_schedule=_schedule(raw, "WEBHOOK_RETRY_SCHEDULE", problems),
            webhook_timeout_seconds=float(integer("WEBHOOK_TIMEOUT_SECONDS", 1, 60)),
            webhook_interval_seconds=integer("WEBHOOK_INTERVAL_SECONDS", 1, 3600),
            webhook_allow_http=_bool(raw, "WEBHOOK_ALLOW_HTTP", problems),
        )
        for name in ("WECHAT_APPID", "WECHAT_SECRET", "ID_HASH_KEY", "FIELD_ENC_KEY",
                     "SIGNING_KEYS_FILE"):
            if not raw[name]:
                problems.append(f"{name} is required (see the settings table in README.md)")
        _check_wechatpay(raw, problems)
        if problems:
            raise SettingsError(problems)
        return settings

    def redacted(self) -> dict[str, object]:
        """The settings as a dict safe to log: secrets and the store URI's password hidden."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "mongodb_uri":
                value = _redact_uri(value)
            out[f.name] = repr(value) if isinstance(value, Secret) else str(value)
        return out


def _pairs(raw: Mapping[str, str], name: str, problems: list[str], kind: type) -> tuple[Any, ...]:
    """'a:x,b:y' or 'a=1,b=2' → ((a, x), (b, y)); problems are collected, not raised."""
    out: list[tuple[str, Any]] = []
    for part in filter(None, (p.strip() for p in raw[name].split(","))):
        key, sep, value = part.replace("=", ":", 1).partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier() or not value:
            problems.append(f"{name}: {part!r} should look like key:value")
            continue
        try:
            out.append((key, kind(value)))
        except ValueError:
            problems.append(f"{name}: {part!r} value must be {kind.__name__}")
    if not out:
        problems.append(f"{name} must not be empty")
    return tuple(out)


def _schedule(raw: Mapping[str, str], name: str, problems: list[str]) -> tuple[int, ...]:
    """'1,5,30' → (1, 5, 30): positive whole seconds, at least one."""
    try:
        out = tuple(int(p) for p in raw[name].split(",") if p.strip())
    except ValueError:
        out = ()
    if not out or min(out) < 1 or max(out) > 7 * 86400:
        problems.append(f"{name} must be comma-separated seconds between 1 and 604800")
        return (1,)
    return out


def _bool(raw: Mapping[str, str], name: str, problems: list[str]) -> bool:
    try:
        return parse_bool(raw[name])
    except ValueError:
        problems.append(f"{name} must be true or false, got {raw[name]!r}")
        return False


def _check_wechatpay(raw: Mapping[str, str], problems: list[str]) -> None:
    """WeChat Pay is all or nothing: with a merchant id, every key setting must be present."""
    notify = raw["WECHATPAY_NOTIFY_BASE"]
    if notify:
        parts = urlsplit(notify)
        if parts.scheme != "https" or not parts.netloc or parts.path.strip("/") or parts.query:
            problems.append("WECHATPAY_NOTIFY_BASE must be an https origin without path or query")
    if not raw["WECHATPAY_MCHID"]:
        return
    for name in ("WECHATPAY_MERCHANT_SERIAL_NO", "WECHATPAY_MERCHANT_KEY_FILE",
                 "WECHATPAY_API_V3_KEY", "WECHATPAY_PUBLIC_KEY_FILE", "WECHATPAY_PUBLIC_KEY_ID",
                 "WECHATPAY_NOTIFY_BASE"):
        if not raw[name]:
            problems.append(f"{name} is required when WECHATPAY_MCHID is set")
    for name in ("WECHATPAY_MERCHANT_KEY_FILE", "WECHATPAY_PUBLIC_KEY_FILE"):
        if raw[name] and not Path(raw[name]).is_file():
            problems.append(f"{name}: no such file {raw[name]!r}")
    if raw["WECHATPAY_API_V3_KEY"] and len(raw["WECHATPAY_API_V3_KEY"].encode()) != 32:
        problems.append("WECHATPAY_API_V3_KEY must be exactly 32 bytes")
    if raw["WECHATPAY_PUBLIC_KEY_ID"] and not raw["WECHATPAY_PUBLIC_KEY_ID"].startswith("PUB_KEY_ID_"):
        problems.append("WECHATPAY_PUBLIC_KEY_ID must look like PUB_KEY_ID_...")


def _redact_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@", 1)
    return uri


def parse_bool(value: str) -> bool:
    """Parse a boolean option; unknown words are an error."""
    try:
        return _BOOLS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"not a boolean: {value!r}") from None


def markdown_table() -> str:
    """The README's settings table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for o in OPTIONS:
        default = "(secret, required)" if o.secret else (f"`{o.default}`" if o.default else "")
        rows.append(f"| `{o.env}` | {default} | {o.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
