"""The command sink: a local program run with the alert as JSON on its stdin.

`argv` is run without a shell, given the same document the webhook sends (`alerts.render`), its
stdout discarded and the tail of its stderr kept for the verdict. Exit 0 is delivered, 75
(EX_TEMPFAIL, sysexits.h) asks for a retry, anything else is a failure. A command still running
after `timeout` is killed with its whole process group (a `sh -c` wrapper's children too) and
retried. The `TABLEWATCH_*` variables are not passed on: they hold the other sinks' secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from alerts.base import Sink
from alerts.render import render_document
from core.safetext import safe
from core.settings import CommandSink
from core.sinks import Alert, Outcome, Step, Verdict

EX_TEMPFAIL = 75
STDERR_TAIL = 4096
"""Bytes of stderr kept (its last line goes into the verdict)."""


class Command(Sink):
    """The command sink, built from `[alerts.command]`."""

    name = "command"

    def __init__(self, config: CommandSink, *, host: str) -> None:
        self.config = config
        self.host = host

    def render(self, alert: Alert, step: Step, trigger: bytes | None) -> bytes | None:
        """The webhook's JSON document."""
        return render_document(alert, step)

    async def deliver(self, payload: bytes) -> Verdict:
        """Run the command with `payload` on stdin; the verdict from its exit status."""
        argv = list(self.config.argv)
        program = safe(argv[0] if argv else "", 200)
        timeout = self.config.timeout.total_seconds()
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TABLEWATCH_")}
        # stderr goes through a pipe of our own, not asyncio's: asyncio's wait() also waits
        # for its pipes to close, which a background child holding stderr could put off forever
        read_end, write_end = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=write_end,
                env=env,
                start_new_session=True,  # its own process group, killed whole on timeout
            )
        except FileNotFoundError:
            return _refused(read_end, Outcome.FAILED, f"command not found: {program}")
        except PermissionError:
            return _refused(read_end, Outcome.FAILED, f"command not executable: {program}")
        except (OSError, ValueError) as exc:  # out of processes or memory: may pass
            return _refused(read_end, Outcome.RETRY, f"cannot start {program}: {exc}")
        finally:
            os.close(write_end)  # the child has its own copy
        tail = bytearray()
        collecting = asyncio.ensure_future(_tail(read_end, tail))
        try:
            async with asyncio.timeout(timeout):
                await _feed(process, payload)
                code = await process.wait()
            # a background child may hold stderr open after the command exited: not for long
            await asyncio.wait([collecting], timeout=1.0)
        except TimeoutError:
            return Verdict(Outcome.RETRY, f"timed out after {timeout:g}s")
        finally:
            collecting.cancel()
            await asyncio.gather(collecting, return_exceptions=True)
            if process.returncode is None:  # timed out or cancelled
                _kill_group(process.pid)
                if process.stdin is not None and not process.stdin.transport.is_closing():
                    process.stdin.transport.abort()  # unsent input must not hold wait() up
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 5.0)
        return _judge(code, bytes(tail))


def _judge(code: int, stderr: bytes) -> Verdict:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    said = f": {safe(lines[-1].strip(), 200)}" if lines else ""
    if code == 0:
        return Verdict(Outcome.SENT, "exit 0")
    if code == EX_TEMPFAIL:
        return Verdict(Outcome.RETRY, f"exit 75 (temporary failure){said}")
    if code < 0:
        return Verdict(Outcome.FAILED, f"killed by signal {-code}{said}")
    return Verdict(Outcome.FAILED, f"exit {code}{said}")


async def _feed(process: asyncio.subprocess.Process, payload: bytes) -> None:
    stdin = process.stdin
    assert stdin is not None
    # a command that exits without reading its input is its own business, not a failure
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(payload)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


async def _tail(fd: int, kept: bytearray) -> None:
    """Read the stderr pipe `fd` to its end (and close it), keeping its last STDERR_TAIL bytes
    in `kept`, so that what was read survives a cancellation."""
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while chunk := await reader.read(65536):
            kept += chunk
            del kept[:-STDERR_TAIL]
    finally:
        transport.close()


def _refused(fd: int, outcome: Outcome, detail: str) -> Verdict:
    os.close(fd)
    return Verdict(outcome, safe(detail, 300))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
