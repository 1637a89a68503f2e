"""Starts the three scoring parties of :mod:`.multiparty` as local processes and relays to them.

:class:`LocalParties` picks three free loopback ports, starts one ``python -m
carevault.modelguard.multiparty`` process per party, hands each its own model-share frame on its
own stdin pipe, waits (with a deadline) until all three have connected to one another, and then
relays the doctor's client's per-party request frames and the parties' reply frames. Every wait
has a deadline; on any failure (a party refuses, exits or is too slow) all three processes are
stopped and the error says which party and why, and :meth:`LocalParties.close` always reaps them.

The relay is a convenience of the local setup: the process that runs it passes every party's
frames, so it could recombine them. In a deployment the model owner and the doctor's client
each talk to every party over that party's own authenticated channel and nobody relays.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any

from numpy.typing import NDArray

from . import multiparty as mp

START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0
START_ATTEMPTS = 3  # a port picked as free can be taken by someone else before a party binds it


class LaunchError(mp.MultipartyError):
    """The parties could not be started, or one of them stopped answering."""


class DeadlineError(LaunchError):
    """A party did not answer in time."""


class PartyRefusedError(LaunchError):
    """A party refused what it was sent at start-up (its model share); starting again won't help."""


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free on the loopback interface right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((mp.LOOPBACK, 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class LocalParties:
    """Three local party processes holding shares of one model; use as a context manager.

    ``model_shares`` are the dealer's frames from :func:`.multiparty.deal_model`, in party order.
    """

    def __init__(
        self,
        model_shares: Sequence[bytes],
        *,
        start_timeout: float = START_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if len(model_shares) != mp.N_PARTIES:
            raise mp.MultipartyInputError(
                f"expected {mp.N_PARTIES} model shares, got {len(model_shares)}"
            )
        self.model_shares = tuple(model_shares)
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.n_features = mp.parse_model_share(model_shares[0], 0).n_features
        self.client = mp.MultipartyClient(self.n_features)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stderr_files: list[IO[bytes]] = []
        self.ports: list[int] = []
        self.start_seconds = 0.0

    # -- life cycle --

    def start(self) -> LocalParties:
        began = time.perf_counter()
        for attempt in range(START_ATTEMPTS):
            try:
                self._start_once()
                break
            except LaunchError as exc:
                self.close(graceful=False)
                # Only a party that exited (say, its port was taken meanwhile) is worth a retry.
                if isinstance(exc, (PartyRefusedError, DeadlineError)):
                    raise
                if attempt == START_ATTEMPTS - 1:
                    raise
        self.start_seconds = time.perf_counter() - began
        return self

    def _start_once(self) -> None:
        self.ports = free_ports(mp.N_PARTIES)
        ports = ",".join(str(p) for p in self.ports)
        for party in range(mp.N_PARTIES):
            command = [sys.executable, "-m", "carevault.modelguard.multiparty"]
            command += ["--party", str(party), "--ports", ports]
            # stderr to a file, not a pipe: nobody drains it while the party runs.
            errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
            self.stderr_files.append(errors)
            self.processes.append(
                subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
                )
            )
        for party, share in enumerate(self.model_shares):
            self._send(party, share)
        frames = self._receive_all(time.monotonic() + self.start_timeout, "start")
        for party, frame in enumerate(frames):
            if frame != mp.READY_MAGIC:
                raise LaunchError(f"{mp.PARTIES[party]} sent an unexpected frame (start)")

    def close(self, *, graceful: bool = True) -> None:
        """Stop every party and reap it; never raises.

        Graceful: ask them to stop (they close their MPC session together) and give them a few
        seconds. After a failure the parties may be stuck waiting for one another, so they are
        terminated at once (then killed if they do not go).
        """
        processes, self.processes = self.processes, []
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                if graceful and process.poll() is None and process.stdin is not None:
                    process.stdin.write(mp.LENGTH.pack(len(mp.STOP_MAGIC)) + mp.STOP_MAGIC)
                    process.stdin.close()
        deadline = time.monotonic() + (5.0 if graceful else 0.0)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        stream.close()
        files, self.stderr_files = self.stderr_files, []
        for errors in files:
            errors.close()

    def __enter__(self) -> LocalParties:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return len(self.processes) == mp.N_PARTIES and all(p.poll() is None for p in self.processes)

    # -- scoring --

    def predict(self, X: object, reveal: str = "label") -> NDArray[Any]:
        """Labels (1 malignant) or scores of one patient (k,) or a batch (n, k).

        Bad input is refused by the client before anything is sent and the parties keep running;
        a failure among the parties stops all of them (their sessions would be out of step).
        """
        if not self.running:
            raise LaunchError("the parties are not running (start them, or they have stopped)")
        requests = self.client.share_request(X, reveal)
        patients = mp.REQUEST_HEADER.unpack_from(requests[0])[3]
        replies = self.relay(requests)
        try:
            return self.client.reveal(replies, reveal, patients)
        except mp.MultipartyError:
            self.close(graceful=False)
            raise

    def relay(self, requests: Sequence[bytes]) -> list[bytes]:
        """Hand each party its request frame and return the three reply frames, in party order.

        Any failure stops all three parties (their MPC sessions would be out of step).
        """
        if not self.running:
            raise LaunchError("the parties are not running (start them, or they have stopped)")
        if len(requests) != mp.N_PARTIES:
            raise mp.MultipartyInputError(f"expected {mp.N_PARTIES} requests, got {len(requests)}")
        try:
            for party, request in enumerate(requests):
                self._send(party, request)
            return self._receive_all(time.monotonic() + self.request_timeout, "scoring")
        except mp.MultipartyError:
            self.close(graceful=False)
            raise

    # -- pipes --

    def _send(self, party: int, frame: bytes) -> None:
        stdin = self.processes[party].stdin
        assert stdin is not None
        try:
            stdin.write(mp.LENGTH.pack(len(frame)) + frame)
            stdin.flush()
        except (BrokenPipeError, OSError):
            raise LaunchError(self._exit_reason(party, "sending")) from None

    def _receive_all(self, deadline: float, stage: str) -> list[bytes]:
        """One frame from every party, read side by side: a party that refuses or dies is
        reported at once, not after its peers (stuck waiting for it) run into the deadline."""
        fds = {self._stdout(party).fileno(): party for party in range(mp.N_PARTIES)}
        buffers = {party: bytearray() for party in fds.values()}
        frames: dict[int, bytes] = {}
        while len(frames) < mp.N_PARTIES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = ", ".join(mp.PARTIES[p] for p in sorted(set(fds.values()) - set(frames)))
                raise DeadlineError(f"no answer within the deadline ({stage}) from {late}")
            waiting = [fd for fd, party in fds.items() if party not in frames]
            ready, _, _ = select.select(waiting, [], [], remaining)
            for fd in ready:
                party = fds[fd]
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise LaunchError(self._exit_reason(party, stage))
                buffer = buffers[party]
                buffer += chunk
                if len(buffer) < mp.LENGTH.size:
                    continue
                (length,) = mp.LENGTH.unpack_from(buffer)
                if length > mp.MAX_FRAME_BYTES:
                    raise LaunchError(f"{mp.PARTIES[party]} sent a frame over the size limit")
                if len(buffer) > mp.LENGTH.size + length:
                    raise LaunchError(f"{mp.PARTIES[party]} sent more than one frame ({stage})")
                if len(buffer) == mp.LENGTH.size + length:
                    frame = bytes(buffer[mp.LENGTH.size :])
                    if frame.startswith(mp.ERROR_MAGIC):
                        raise PartyRefusedError(self._refusal(party, frame, stage))
                    frames[party] = frame
        return [frames[party] for party in range(mp.N_PARTIES)]

    def _stdout(self, party: int) -> IO[bytes]:
        stdout = self.processes[party].stdout
        assert stdout is not None
        return stdout

    def _refusal(self, party: int, frame: bytes, stage: str) -> str:
        reason = frame[4 : 4 + mp.MAX_ERROR_CHARS].decode("utf-8", "replace")
        return f"{mp.PARTIES[party]} refused ({stage}): {reason}"

    def _exit_reason(self, party: int, stage: str) -> str:
        process = self.processes[party]
        try:
            code = process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            return f"{mp.PARTIES[party]} closed its pipe ({stage})"
        # The last line of its stderr names the failure (MPyC or Python); never patient data,
        # which a party holds only as random-looking shares.
        tail = b""
        with contextlib.suppress(OSError, ValueError, IndexError):
            errors = self.stderr_files[party]
            errors.seek(0)
            tail = errors.read()[-400:]
        last = tail.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return f"{mp.PARTIES[party]} exited with code {code} ({stage}) {last[0]}".strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Demo: ``python -m carevault.modelguard.multiparty_launcher [--cases N] [--reveal ...]``.

    Trains the logistic model, deals its shares, starts the three parties and scores the first
    test cases one by one beside the plaintext model. Prints no features, only labels / scores.
    """
    import argparse

    from .dataset import load_split
    from .models import LOGISTIC, fit, linear_form

    parser = argparse.ArgumentParser(description="multi-party scoring among 3 local parties")
    parser.add_argument("--cases", type=int, default=5, help="test cases to score (1-143)")
    parser.add_argument("--reveal", choices=sorted(mp.REVEALS), default="label")
    options = parser.parse_args(argv)
    split = load_split()
    if not 1 <= options.cases <= len(split.X_test):
        parser.error(f"--cases must be between 1 and {len(split.X_test)}")
    pipeline = fit(LOGISTIC, split.X_train, split.y_train)
    model = linear_form(pipeline)
    try:
        with LocalParties(mp.deal_model(model)) as parties:
            print(f"parties started and connected in {parties.start_seconds:.2f} s")
            for i, x in enumerate(split.X_test[: options.cases]):
                start = time.perf_counter()
                value = parties.predict(x, options.reveal)[0]
                elapsed = (time.perf_counter() - start) * 1e3
                plain = (
                    pipeline.predict(x[None, :])[0]
                    if options.reveal == "label"
                    else model.decision(x[None, :])[0]
                )
                print(
                    f"case {i}: multi-party {value:.6g}, plaintext {plain:.6g} ({elapsed:.1f} ms)"
                )
    except mp.MultipartyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
