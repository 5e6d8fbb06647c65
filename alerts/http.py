"""One HTTP POST and its verdict, for the sinks that speak HTTP, and their base `HttpSink`.

The session is made on first use, inside the running loop (aiohttp binds a session to the loop
that made it; a sink is built before the loop runs). Redirects are not followed (see
`alerts.verdict`), at most `MAX_ANSWER` bytes of an answer are read (a misbehaving endpoint must
not fill memory), and every detail returned has the secrets masked: an aiohttp error can quote the
URL, a Slack webhook URL is itself the credential, and any URL may carry basic-auth credentials
(`https://user:password@host`), masked too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Generic, Protocol, TypeVar

import aiohttp

from alerts.base import Sink
from alerts.verdict import DETAIL_CHARS, judge
from core.safetext import safe
from core.sinks import Outcome, Verdict

__all__ = ["MASK", "MAX_ANSWER", "HttpPoster", "HttpSink", "credentials"]

MAX_ANSWER = 64 * 1024
"""Bytes of a response body read at most (the verdict keeps far less)."""
MASK = "***"
USER_AGENT = "tablewatch"
JSON = {"Content-Type": "application/json"}


def credentials(url: str) -> list[str]:
    """The basic-auth userinfo of `url` and its password (none when it has none), found without
    parsing: a URL too broken to parse may still hold them.

    >>> credentials("http://am:s3cret@[::1:9093/x"), credentials("https://host/p@th")
    (['am:s3cret', 's3cret'], [])
    """
    authority = url.partition("://")[2]
    for end in "/?#":
        authority = authority.partition(end)[0]
    userinfo = authority.rpartition("@")[0]
    return [userinfo, userinfo.partition(":")[2]] if userinfo else []


class HttpPoster:
    """POSTs bodies with a lazily made `aiohttp.ClientSession`; `secrets` are masked in details.

    `setting` names where the URL is configured, for the detail of a URL no retry can mend.
    """

    def __init__(self, secrets: Iterable[str] = (), *, setting: str = "the URL") -> None:
        self.secrets = {s for s in secrets if s}
        self.setting = setting
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
        RETRY when none came, FAILED for a URL that is not a valid http(s) URL."""
        # longest first, so a secret containing another is masked whole
        secrets = sorted(self.secrets.union(credentials(url)), key=len, reverse=True)
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
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            # retrying cannot mend the settings; the URL itself is not shown (may be secret)
            return Verdict(Outcome.FAILED, f"{type(exc).__name__}: check {self.setting}")
        except (aiohttp.ClientError, OSError) as exc:
            # as alerts.verdict.unreachable, but masked before cutting: cutting first could
            # leave the head of a secret that no longer matches whole
            text = _masked(f"{type(exc).__name__}: {exc}", secrets)
            return Verdict(Outcome.RETRY, safe(text, DETAIL_CHARS))
        cleaned = _masked(answer.decode("utf-8", "replace"), secrets).encode("utf-8")
        verdict = judge(status, cleaned, retry_after)
        return Verdict(verdict.outcome, _masked(verdict.detail, secrets), verdict.retry_after)

    async def close(self) -> None:
        """Close the session (a later post makes a new one)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


class SinkSettings(Protocol):
    """What every `[alerts.*]` table gives."""

    @property
    def timeout(self) -> timedelta: ...


C = TypeVar("C", bound=SinkSettings)


class HttpSink(Sink, Generic[C]):
    """A sink built from its settings table `config` that POSTs JSON within `config.timeout`,
    masking `secrets` in what it reports; `host` is the machine tablewatch runs on."""

    url_setting = "url"
    """The setting naming the URL, in `[alerts.<name>]`."""

    def __init__(self, config: C, *, host: str, secrets: Iterable[str] = ()) -> None:
        self.config = config
        self.host = host
        setting = f"[alerts.{self.name}] {self.url_setting}"
        self._http = HttpPoster(secrets, setting=setting)

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Verdict:
        """POST the JSON `body` to `url`, with `headers` besides its Content-Type."""
        timeout = self.config.timeout.total_seconds()
        return await self._http.post(url, body, {**JSON, **(headers or {})}, timeout)

    async def close(self) -> None:
        """Close the HTTP session (a later delivery opens a new one)."""
        await self._http.close()


def _masked(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes of a response body: a huge or endless answer is cut, not buffered."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
