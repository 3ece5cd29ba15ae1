"""Download through a real HTTP server on loopback; nothing unverified is ever left behind."""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from lmbench.data import download as dl
from lmbench.cli import main as cli_main


@pytest.fixture(scope="module")
def ptb_bytes(ptb_path) -> dict[str, bytes]:
    return {name: (ptb_path / name).read_bytes() for name in dl.SHA256}


class Server:
    """Serves `routes` (path -> bytes | int status | callable(handler)) on 127.0.0.1."""

    def __init__(self, routes):
        self.routes = routes
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                route = outer.routes.get(self.path, 404)
                if callable(route):
                    return route(self)
                if isinstance(route, int):
                    self.send_error(route)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(route)))
                self.end_headers()
                self.wfile.write(route)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def make(routes):
        servers.append(Server(routes))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def fetch(tmp_path, mirror, **kw):
    kw.setdefault("retries", 1)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5)
    return dl.download_ptb(tmp_path, mirror, canonical=False, log=lambda m: None, **kw)


def leftovers(tmp_path):
    return sorted(p.name for p in (tmp_path / "ptb").iterdir())


def test_http_mirror_success(tmp_path, server, ptb_bytes):
    srv = server({f"/ptb/{n}": b for n, b in ptb_bytes.items()})
    out = fetch(tmp_path, srv.url + "/ptb/")
    assert out == tmp_path / "ptb"
    assert leftovers(tmp_path) == sorted(dl.SHA256)
    for name, data in ptb_bytes.items():
        assert (out / name).read_bytes() == data


def test_downloaded_files_are_readable_by_every_user_of_the_machine(tmp_path, server, ptb_bytes):
    srv = server({f"/{n}": b for n, b in ptb_bytes.items()})
    out = fetch(tmp_path, srv.url)
    assert {oct((out / n).stat().st_mode & 0o777) for n in ptb_bytes} == {oct(0o644)}  # not a temp file's 0600


def test_verified_cache_costs_no_network(tmp_path, server, ptb_bytes):
    srv = server({f"/{n}": b for n, b in ptb_bytes.items()})
    fetch(tmp_path, srv.url)
    assert len(srv.hits) == 3
    srv.close()  # the server is gone: a verified cache must not need it
    fetch(tmp_path, srv.url)
    assert len(srv.hits) == 3


def test_corrupted_bytes_are_never_left(tmp_path, server, ptb_bytes):
    bad = bytearray(ptb_bytes["ptb.valid.txt"])
    bad[100] ^= 0x20
    routes = {f"/{n}": b for n, b in ptb_bytes.items()}
    routes["/ptb.valid.txt"] = bytes(bad)
    srv = server(routes)
    with pytest.raises(dl.DownloadError) as e:
        fetch(tmp_path, srv.url)
    msg = str(e.value)
    assert "ptb.valid.txt" in msg and "checksum mismatch" in msg
    assert dl.SHA256["ptb.valid.txt"] in msg and hashlib.sha256(bytes(bad)).hexdigest() in msg
    assert "LMBENCH_PTB_MIRROR" in msg
    assert leftovers(tmp_path) == ["ptb.test.txt", "ptb.train.txt"]


def test_truncated_body_is_retried_then_refused(tmp_path, server, ptb_bytes):
    def truncated(handler):
        data = ptb_bytes["ptb.test.txt"]
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.close_connection = True

    routes = {f"/{n}": b for n, b in ptb_bytes.items()}
    routes["/ptb.test.txt"] = truncated
    srv = server(routes)
    with pytest.raises(dl.DownloadError) as e:
        fetch(tmp_path, srv.url, retries=2)
    assert "ptb.test.txt" in str(e.value) and "truncated" in str(e.value)
    assert srv.hits.count("/ptb.test.txt") == 3  # first try + 2 retries
    assert "ptb.test.txt" not in leftovers(tmp_path)
    assert not [p for p in leftovers(tmp_path) if p.endswith(".part")]


def test_http_404_names_file_and_fix(tmp_path, server):
    srv = server({})
    with pytest.raises(dl.DownloadError) as e:
        fetch(tmp_path, srv.url)
    assert "HTTP 404" in str(e.value) and "ptb.train.txt" in str(e.value)
    assert "--mirror" in str(e.value)
    assert leftovers(tmp_path) == []


def test_server_gone(tmp_path, server):
    srv = server({})
    srv.close()
    with pytest.raises(dl.DownloadError) as e:
        fetch(tmp_path, srv.url, retries=1)
    assert "unreachable" in str(e.value)
    assert leftovers(tmp_path) == []


def test_transient_5xx_is_retried(tmp_path, server, ptb_bytes):
    calls = {"n": 0}

    def flaky(handler):
        calls["n"] += 1
        if calls["n"] == 1:
            handler.send_error(503)
            return
        data = ptb_bytes["ptb.valid.txt"]
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    routes = {f"/{n}": b for n, b in ptb_bytes.items()}
    routes["/ptb.valid.txt"] = flaky
    srv = server(routes)
    fetch(tmp_path, srv.url, retries=2)
    assert calls["n"] == 2
    assert leftovers(tmp_path) == sorted(dl.SHA256)


def test_file_url_and_directory_mirrors(tmp_path, ptb_path):
    a = fetch(tmp_path / "a", ptb_path.as_uri())
    b = fetch(tmp_path / "b", str(ptb_path))
    for name in dl.SHA256:
        assert (a / name).read_bytes() == (b / name).read_bytes() == (ptb_path / name).read_bytes()


def test_damaged_cache_is_reported_and_fetched_again(tmp_path, ptb_path):
    fetch(tmp_path, str(ptb_path))
    cached = tmp_path / "ptb" / "ptb.train.txt"
    cached.write_bytes(cached.read_bytes()[:-10])
    messages = []
    dl.download_ptb(tmp_path, str(ptb_path), canonical=False, log=messages.append)
    assert any("ptb.train.txt" in m and "fails verification" in m for m in messages)
    assert dl.sha256_of(cached) == dl.SHA256["ptb.train.txt"]


def test_mikolov_tarball_source(tmp_path, server, ptb_bytes, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in ptb_bytes.items():
            info = tarfile.TarInfo(dl.TGZ_MEMBER.format(name=name))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    srv = server({"/simple-examples.tgz": buf.getvalue()})
    monkeypatch.setattr(dl, "MIKOLOV_TGZ", srv.url + "/simple-examples.tgz")
    monkeypatch.setattr(dl, "ZAREMBA_RAW", srv.url + "/raw/{name}")
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    out = dl.download_ptb(tmp_path, None, retries=0, log=lambda m: None)
    assert leftovers(tmp_path) == sorted(dl.SHA256)
    assert (out / "ptb.train.txt").read_bytes() == ptb_bytes["ptb.train.txt"]
    assert not any(h.startswith("/raw/") for h in srv.hits)  # the tarball was enough


def test_canonical_sources_fall_through_in_order(tmp_path, server, ptb_bytes, monkeypatch):
    srv = server({f"/raw/{n}": b for n, b in ptb_bytes.items()})  # no tarball here
    monkeypatch.setattr(dl, "MIKOLOV_TGZ", srv.url + "/simple-examples.tgz")
    monkeypatch.setattr(dl, "ZAREMBA_RAW", srv.url + "/raw/{name}")
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    dl.download_ptb(tmp_path, None, retries=0, log=lambda m: None)
    assert srv.hits[0] == "/simple-examples.tgz"
    assert leftovers(tmp_path) == sorted(dl.SHA256)


def test_no_source_tells_how_to_set_a_mirror(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dl, "MIKOLOV_TGZ", "http://127.0.0.1:9/simple-examples.tgz")
    monkeypatch.setattr(dl, "ZAREMBA_RAW", "http://127.0.0.1:9/{name}")
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    assert cli_main(["download", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "LMBENCH_PTB_MIRROR" in err and "--mirror" in err and "ptb.train.txt" in err


def test_data_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    assert cli_main(["download", "--data-dir", str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "is a file" in err and "--data-dir" in err
