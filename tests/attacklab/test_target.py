"""Where the lab may aim (loopback only unless the officer owns the host), and the client that
speaks from an address of its own, counted against a scenario's bounds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from carevault.attacklab.bounds import BoundReached, Bounds
from carevault.attacklab.context import Context
from carevault.attacklab.target import AttackClient, TargetRefused, check_target


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:8000/x", "https://[::1]:8443"]
)
def test_loopback_targets_are_allowed_and_reduced_to_their_origin(url):
    assert check_target(url).count("/") == 2


@pytest.mark.parametrize("url", ["http://10.0.0.1", "http://192.0.2.7:8000", "https://8.8.8.8"])
def test_a_target_outside_loopback_is_refused_with_the_way_to_allow_it(url):
    with pytest.raises(TargetRefused, match="--i-own-this-host"):
        check_target(url)


def test_a_host_the_officer_owns_is_allowed_by_name():
    assert check_target("http://192.0.2.7:8000", "192.0.2.7") == "http://192.0.2.7:8000"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:8000", "http://"])
def test_what_is_not_an_http_url_is_refused(url):
    with pytest.raises(TargetRefused):
        check_target(url)


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.headers.get("X-Forwarded-For", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_client_appends_its_address_as_the_last_hop_after_forged_ones(echo):
    client = AttackClient(echo, address="198.18.3.4", forged=["1.2.3.4", "5.6.7.8"])
    assert client.get("/").body == b"1.2.3.4, 5.6.7.8, 198.18.3.4"
    assert AttackClient(echo, address="198.18.3.5").get("/").body == b"198.18.3.5"


def test_a_scenario_cannot_send_more_requests_than_its_bound(echo):
    ctx = Context(base_url=echo, bounds=Bounds(requests=3, seconds=60), index=7)
    attacker = ctx.client(1)
    for _ in range(3):
        attacker.get("/")
    with pytest.raises(BoundReached, match="request bound 3"):
        attacker.get("/")
    assert ctx.requests == 3
    assert len(ctx.attack_times) == 3
    assert ctx.addresses == {ctx.address(1)}


def test_honest_clients_are_not_counted_as_attack_traffic(echo):
    ctx = Context(base_url=echo, bounds=Bounds(requests=1, seconds=60), index=2)
    honest = ctx.honest_client(5)
    for _ in range(3):
        assert honest.get("/").body == b"10.77.2.5"
    assert ctx.requests == 0
    assert ctx.honest_requests == 3


def test_each_scenario_speaks_from_addresses_of_its_own():
    first = Context(base_url="http://127.0.0.1", bounds=Bounds(1, 1), index=1)
    second = Context(base_url="http://127.0.0.1", bounds=Bounds(1, 1), index=2)
    ours = {first.address(n) for n in range(2048)}
    theirs = {second.address(n) for n in range(2048)}
    assert len(ours) == 2048
    assert not ours & theirs
    assert all(a.startswith("198.1") for a in ours)
