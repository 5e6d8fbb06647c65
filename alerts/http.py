"""One HTTP POST and its verdict, for the sinks that speak HTTP.

The session is made on first use, inside the running loop (aiohttp binds a session to the loop
that made it; a sink is built before the loop runs). Redirects are not followed (see
`alerts.verdict`), at most `MAX_ANSWER` bytes of an answer are read (a misbehaving endpoint must
not fill memory), and every detail returned has the secrets masked: an aiohttp error can quote the
URL, and a Slack webhook URL is itself the credential.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import aiohttp

from alerts.verdict import DETAIL_CHARS, judge
from core.safetext import safe
from core.sinks import Outcome, Verdict

MAX_ANSWER = 64 * 1024
"""Bytes of a response body read at most (the verdict keeps far less)."""
MASK = "***"
USER_AGENT = "tablewatch"


class HttpPoster:
    """POSTs bodies with a lazily made `aiohttp.ClientSession`; `secrets` are masked in details."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced by `***`."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
            self._loop = loop
        return self._session

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], within: float
    ) -> Verdict:
        """POST `body` to `url`, giving up after `within` seconds; the verdict on the answer, or
        RETRY when none came."""
        try:
            async with self._client().post(
                url,
                data=body,
                headers=dict(headers),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=within),
            ) as response:
                answer = await _read_bounded(response.content, MAX_ANSWER)
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            return Verdict(Outcome.RETRY, f"timed out after {within:g}s")
        except aiohttp.InvalidURL:
            # retrying cannot mend a malformed URL; the URL itself is not shown (may be secret)
            return Verdict(Outcome.FAILED, "invalid URL")
        except (aiohttp.ClientError, OSError) as exc:
            return self._unreachable(exc)
        cleaned = self.scrub(answer.decode("utf-8", "replace")).encode("utf-8")
        verdict = judge(status, cleaned, retry_after)
        return Verdict(verdict.outcome, self.scrub(verdict.detail), verdict.retry_after)

    def _unreachable(self, exc: BaseException) -> Verdict:
        # as alerts.verdict.unreachable, but masked before cutting: cutting first could leave
        # the head of a secret that no longer matches whole
        text = self.scrub(f"{type(exc).__name__}: {exc}")
        return Verdict(Outcome.RETRY, safe(text, DETAIL_CHARS))

    async def close(self) -> None:
        """Close the session (a later post makes a new one)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
