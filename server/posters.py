"""Ballot posters (PNG and SVG): a mini-program code opening the ballot, or a plain QR fallback.

Rendering is CPU work: it runs in an executor, never on the IOLoop. Results are cached in the
store per ballot, format and content, so every process serves the same poster.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from html import escape
from pathlib import Path
from typing import Any

import qrcode
import qrcode.image.svg
from bson import Binary
from PIL import Image, ImageDraw, ImageFont
from pymongo.asynchronous.database import AsyncDatabase

from miniprogram_api.wechat import WeChatError

log = logging.getLogger(__name__)
BALLOT_PAGE = "pages/ballot/index"
_FONT_CANDIDATES = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


def scene_for(ballot_id: str) -> str:
    """The mini-program scene: ≤ 32 chars of the allowed alphabet; the page resolves it."""
    return "b=" + ballot_id.removeprefix("bl_")[:24]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in _FONT_CANDIDATES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def render_png(title: str, closes_at: str, code_png: bytes, ballot_id: str) -> bytes:
    code = Image.open(io.BytesIO(code_png)).convert("RGB").resize((520, 520))
    poster = Image.new("RGB", (720, 1000), "white")
    draw = ImageDraw.Draw(poster)
    has_cjk = any(Path(p).exists() for p in _FONT_CANDIDATES)
    # Without a CJK font the title cannot be drawn; the SVG poster always carries it.
    draw.text((60, 60), title if has_cjk else "Owners' vote / 业主表决", fill="black", font=_font(40))
    draw.text((60, 130), f"closes {closes_at}", fill="black", font=_font(24))
    poster.paste(code, (100, 220))
    draw.text((60, 780), f"ballot {ballot_id}", fill="black", font=_font(22))
    out = io.BytesIO()
    poster.save(out, "PNG", optimize=True)
    return out.getvalue()


def render_svg(title: str, closes_at: str, url: str, ballot_id: str) -> bytes:
    code = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=14, border=2)
    inner = code.to_string(encoding="unicode")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="720" height="1000" viewBox="0 0 720 1000">'
        '<rect width="720" height="1000" fill="white"/>'
        f'<text x="60" y="90" font-size="40" font-family="sans-serif">{escape(title)}</text>'
        f'<text x="60" y="140" font-size="24" font-family="sans-serif">截止 {escape(closes_at)}</text>'
        f'<g transform="translate(100,220)">{inner}</g>'
        f'<text x="60" y="900" font-size="22" font-family="sans-serif">{escape(ballot_id)}</text>'
        "</svg>"
    ).encode()


def plain_qr_png(url: str) -> bytes:
    out = io.BytesIO()
    qrcode.make(url, box_size=10, border=2).save(out)
    return out.getvalue()


class Posters:
    """Makes and caches posters."""

    def __init__(self, db: AsyncDatabase, wechat: Any, web_base: str) -> None:
        self.cache = db["posters"]
        self.wechat = wechat
        self.web_base = web_base

    async def poster(self, ballot: dict[str, Any], fmt: str) -> bytes:
        key = hashlib.sha256(f"{ballot['_id']}|{ballot['title']}|{ballot['closes_at']}".encode())
        cache_id = f"{ballot['_id']}:{fmt}:{key.hexdigest()[:16]}"
        cached = await self.cache.find_one({"_id": cache_id})
        if cached is not None:
            return bytes(cached["content"])
        loop = asyncio.get_running_loop()
        url = f"{self.web_base}/ballot?id={ballot['_id']}"
        closes = ballot["closes_at"].strftime("%Y-%m-%d %H:%M UTC")
        if fmt == "svg":
            content = await loop.run_in_executor(None, render_svg, ballot["title"], closes, url,
                                                 ballot["_id"])
            source = "qr"
        else:
            try:
                code = await self.wechat.get_wxacode_unlimit(scene_for(ballot["_id"]), BALLOT_PAGE)
                source = "wxacode"
            except WeChatError as exc:
                log.warning("no mini-program code, using a plain QR", extra={"code": exc.code})
                code = await loop.run_in_executor(None, plain_qr_png, url)
                source = "qr"
            content = await loop.run_in_executor(None, render_png, ballot["title"], closes, code,
                                                 ballot["_id"])
        await self.cache.update_one({"_id": cache_id},
                                    {"$setOnInsert": {"content": Binary(content), "source": source,
                                                      "ballot_id": ballot["_id"]}}, upsert=True)
        return content
