"""The services of one process, built once and handed to every handler."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from dataclasses import dataclass, field
from typing import Any

import tornado.httputil
from pymongo.asynchronous.database import AsyncDatabase

from server.access import Access
from miniprogram_api.wechatpay import WeChatPayClient
from server.accounts import Accounts, WeChatLogin
from server.audit import Audit
from server.auth import Principal, SessionStore, StaffAccounts
from server.clock import Clock
from server.db import Store
from server.duties import Duties, build_duties
from server.errors import Unauthenticated
from server.keys import load_keyring
from server.ballots import Ballots
from server.casting import Casting
from server.ledger import Ledger
from server.posters import Posters
from server.vote_notices import VoteNotices
from server.voting_jobs import VotingJobs
from voting.signing import Keyring
from server.fees import Fees
from server.fieldcrypto import FieldCrypto
from server.payments import Payments
from server.payreconcile import Reconciliation
from server.payrefunds import Refunds
from server.registry import Registry
from server.roster import RosterImporter
from server.exports import Exports  # issue 6: city platform integration, reports, exports
from server.integration import Integration
from server.open_data import OpenData
from server.reports import Reports
from server.webhooks import Webhooks
from settings import Settings


class Inflight:
    """Counts requests in progress, so SIGTERM can wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count <= 0:
            self.count = 0
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False


async def _no_open_auth(request: tornado.httputil.HTTPServerRequest) -> Principal:
    raise Unauthenticated(code="client_unknown", message="对接客户端未注册")


@dataclass
class Services:
    """Everything a handler may call; handlers never touch pymongo themselves."""

    settings: Settings
    store: Store
    clock: Clock
    wechat: WeChatLogin
    crypto: FieldCrypto
    sessions: SessionStore
    staff_accounts: StaffAccounts
    registry: Registry
    access: Access
    audit: Audit
    accounts: Accounts
    roster: RosterImporter
    duties: Duties
    ledger: Ledger
    ballots: Ballots
    casting: Casting
    vote_notices: VoteNotices
    posters: Posters
    voting_jobs: VotingJobs
    fees: Fees
    payments: Payments
    refunds: Refunds
    reconciliation: Reconciliation
    integration: Integration = field(init=False)  # issue 6, built by _add_integration
    open_data: OpenData = field(init=False)
    webhooks: Webhooks = field(init=False)
    reports: Reports = field(init=False)
    exports: Exports = field(init=False)
    inflight: Inflight = field(default_factory=Inflight)
    open_auth: Any = _no_open_auth
    extra: dict[str, Any] = field(default_factory=dict)


def build_services(settings: Settings, store: Store, clock: Clock, wechat: WeChatLogin,
                   pay: WeChatPayClient | None = None, keyring: Keyring | None = None) -> Services:
    db = store.db
    crypto = FieldCrypto(settings.field_enc_key.reveal(), settings.id_hash_key.reveal())
    sessions = SessionStore(db, clock)
    registry = Registry(db, clock)
    audit = Audit(db, clock)
    services = Services(
        settings=settings, store=store, clock=clock, wechat=wechat, crypto=crypto,
        sessions=sessions,
        staff_accounts=StaffAccounts(db, clock, sessions, settings.login_max_failures,
                                     settings.login_lock_seconds,
                                     settings.admin_session_ttl_seconds),
        registry=registry, access=Access(db, registry), audit=audit,
        accounts=Accounts(db, clock, crypto, sessions, registry, audit,
                          settings.session_ttl_seconds),
        roster=RosterImporter(db, crypto, clock),
        duties=build_duties(settings, db, clock, registry, audit, wechat),
        **_voting_services(settings, db, clock, registry, wechat, keyring),
        **_fee_services(settings, db, clock, audit, pay),
    )
    _add_integration(services)
    return services


def _voting_services(settings: Settings, db: AsyncDatabase, clock: Clock, registry: Registry,
                     wechat: Any, keyring: Keyring | None) -> dict[str, Any]:
    """Owner e-voting: the log, ballots, casting, notices, posters and the scheduled jobs."""
    keyring = keyring or load_keyring(settings.signing_keys_file)
    ledger = Ledger(db, clock, keyring, settings.log_origin)
    ballots = Ballots(db, clock, registry, ledger)
    casting = Casting(db, clock, ballots, ledger)
    return {
        "ledger": ledger, "ballots": ballots, "casting": casting,
        "vote_notices": VoteNotices(db, clock, wechat, settings.vote_template_id),
        "posters": Posters(db, wechat, settings.mp_web_base),
        "voting_jobs": VotingJobs(db, clock, ballots, ledger, casting, wechat,
                                  timedelta(seconds=settings.checkpoint_interval_seconds),
                                  settings.vote_template_id),
    }


def _fee_services(settings: Settings, db: AsyncDatabase, clock: Clock, audit: Audit,
                  pay: WeChatPayClient | None) -> dict[str, Any]:
    """Fees and WeChat Pay; without a client the payment endpoints answer 503."""
    fees = Fees(db, clock, audit)
    base = settings.wechatpay_notify_base or "https://localhost.invalid"
    payments = Payments(db, clock, audit, fees, pay, base + "/api/pay/v1/wechatpay/notify",
                        settings.wechatpay_order_ttl_seconds)
    refunds = Refunds(db, clock, audit, payments, base + "/api/pay/v1/wechatpay/refund-notify")
    return {"fees": fees, "payments": payments, "refunds": refunds,
            "reconciliation": Reconciliation(db, clock, payments)}


def _add_integration(s: Services) -> None:
    """City platform: signed open API, webhooks from the event outbox, reports and exports."""
    db, d = s.store.db, s.duties
    s.integration = Integration(db, s.clock, s.crypto, s.settings.open_api_skew_seconds,
                                s.settings.open_api_rate_per_minute)
    s.open_auth = s.integration.authenticate
    s.open_data = OpenData(db, s.clock, s.registry, s.ballots, d.disclosures, d.ratings,
                           d.complaints, d.credit, s.fees)
    s.webhooks = Webhooks(db, s.clock, s.integration, s.audit, s.settings.webhook_retry_schedule,
                          s.settings.webhook_timeout_seconds, s.settings.webhook_allow_http)
    s.reports = Reports(db, s.clock, s.registry, d.disclosures)
    s.exports = Exports(db)
