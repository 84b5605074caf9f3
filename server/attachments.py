"""Attachments (images, PDF) of disclosures and complaints: content-addressed, size-limited."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from server.audit import actor_of
from server.auth import Principal
from server.clock import Clock
from server.errors import InvalidInput, NotFound, PayloadTooLarge

MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024
# Base64 grows by a third; the endpoint's body limit leaves room for the JSON around it.
MAX_ATTACHMENT_B64 = (MAX_ATTACHMENT_BYTES + 2) // 3 * 4
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
DOCUMENT_TYPES = (*IMAGE_TYPES, "application/pdf")


def sniff_content_type(data: bytes) -> str:
    """The type the bytes really are (magic numbers), never what the client claims."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return ""


@dataclass(frozen=True)
class Attachment:
    """Metadata of one stored file; the bytes are read separately."""

    id: str
    community_id: str
    sha256: str
    size: int
    content_type: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "sha256": self.sha256, "size": self.size,
                "content_type": self.content_type, "name": self.name}


def _from_doc(doc: dict[str, Any]) -> Attachment:
    return Attachment(doc["_id"], doc["community_id"], doc["sha256"], doc["size"],
                      doc["content_type"], doc["name"])


class Attachments:
    """Stores files per community; one copy per (community, SHA-256)."""

    def __init__(self, db: AsyncDatabase, clock: Clock) -> None:
        self.files = db["attachments"]
        self.clock = clock

    async def upload(self, principal: Principal, community_id: str, name: str, content_b64: str,
                     allowed: tuple[str, ...]) -> Attachment:
        try:
            data = base64.b64decode(content_b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(fields={"content_base64": "不是有效的 Base64"}) from None
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise PayloadTooLarge("附件过大", code="attachment_too_large",
                                  fields={"content_base64": f"最大 {MAX_ATTACHMENT_BYTES} 字节"})
        if not data:
            raise InvalidInput(fields={"content_base64": "文件为空"})
        content_type = sniff_content_type(data)
        if content_type not in allowed:
            raise InvalidInput("不支持的文件类型", code="attachment_type",
                               fields={"content_base64": "仅支持 " + "、".join(allowed)})
        digest = hashlib.sha256(data).hexdigest()
        doc = {"_id": "at_" + secrets.token_hex(8), "community_id": community_id,
               "sha256": digest, "size": len(data), "content_type": content_type,
               "name": name, "data": data, "uploaded_by": actor_of(principal),
               "uploaded_at": self.clock.now()}
        try:
            await self.files.insert_one(doc)
        except DuplicateKeyError:
            # The same file was uploaded before in this community: it is the same attachment.
            existing = await self.files.find_one({"community_id": community_id, "sha256": digest},
                                                 {"data": 0})
            assert existing is not None
            return _from_doc(existing)
        return _from_doc(doc)

    async def get(self, attachment_id: str) -> Attachment:
        doc = await self.files.find_one({"_id": attachment_id}, {"data": 0})
        if doc is None:
            raise NotFound("附件不存在", code="attachment_not_found")
        return _from_doc(doc)

    async def content(self, attachment_id: str) -> tuple[Attachment, bytes]:
        doc = await self.files.find_one({"_id": attachment_id})
        if doc is None:
            raise NotFound("附件不存在", code="attachment_not_found")
        return _from_doc(doc), bytes(doc["data"])

    async def resolve(self, community_id: str, ids: list[str], path: str) -> list[dict[str, Any]]:
        """Metadata of the listed attachments, which must belong to the community."""
        out = []
        for i, attachment_id in enumerate(ids):
            doc = await self.files.find_one({"_id": attachment_id}, {"data": 0})
            if doc is None or doc["community_id"] != community_id:
                raise InvalidInput("附件不存在", code="attachment_not_found",
                                   fields={f"{path}[{i}]": "附件不存在或不属于该小区"})
            out.append(_from_doc(doc).to_json())
        return out


def attachment_meta_json(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("id", "sha256", "size", "content_type", "name")}

