"""Attacks on the release binary (issue 11): leaks, confusion, amplification, exhaustion.

Each class reproduces one attack over HTTP (or through the CLI, for bundles and lockfiles)
against ``target/release/packrat`` and the independent fake GitLab, with hostile third
parties played by :class:`harness.Recorder` servers on 127.0.0.1.
"""

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import re
import socket
import tarfile
import tempfile
import threading
import time
import unittest

import harness as h

try:  # the connection flood needs more descriptors than the usual soft limit
    import resource

    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard, 65536), _hard))
except (ImportError, ValueError, OSError):
    pass

P42 = "/api/v4/projects/42/packages/npm"


def tgz(name, version, text="hello"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in (("package/package.json", json.dumps({"name": name, "version": version}).encode()), ("package/index.js", text.encode())):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


class Base(unittest.TestCase):
    config = ""
    upstream_timeout = "10s"

    @classmethod
    def setUpClass(cls):
        cls.fake = h.Fake()
        cls.packrat = h.Packrat(upstream=cls.fake.url, config=cls.config, timeout=cls.upstream_timeout).start()

    @classmethod
    def tearDownClass(cls):
        cls.packrat.cleanup()
        cls.fake.stop()

    def via(self, path, token=None, carrier="PRIVATE-TOKEN", method="GET", body=None, headers=None, **kw):
        hdrs = {**h.token_headers(token, carrier), **(headers or {})}
        return h.request(method, self.packrat.url + path, hdrs, body, **kw)


class DeletedVersions(Base):
    """1. A version deleted in GitLab itself is no longer served once metadata dropped it."""

    config = '[cache]\nmetadata_ttl = "1s"\n'

    def test_deleted_version_is_404_at_every_prefix(self):
        prefixes = [P42, "/api/v4/groups/acme/-/packages/npm", "/api/v4/packages/npm"]
        f = "@acme/util/-/@acme/util-1.0.0.tgz"
        for p in prefixes:
            self.assertEqual(self.via(f"{p}/@acme%2futil", h.ALICE).status, 200)
            self.assertEqual(self.via(f"{p}/{f}", h.ALICE).status, 200)
        self.fake.control("POST", "npm/delete_version", {"project_id": 42, "name": "@acme/util", "version": "1.0.0"})
        time.sleep(1.2)
        doc = self.via(f"{P42}/@acme%2futil", h.ALICE).json()
        self.assertNotIn("1.0.0", doc["versions"])
        for p in prefixes:
            for token in (h.ALICE, h.MAINT):
                r = self.via(f"{p}/{f}", token)
                self.assertEqual(r.status, 404, f"{p} {token}: {r} {r.header('x-packrat-cache')}")


class Redirects(Base):
    """2. No credential reaches another host on a redirect, however the Location is spelled."""

    CARRIERS = [
        (h.ALICE, "PRIVATE-TOKEN"),
        (h.JOB, "Job-Token"),
        (h.DEPLOY_READ, "Deploy-Token"),
        (h.ALICE, "Bearer"),
        (h.DEPLOY_READ, "Basic"),
    ]

    def test_hostile_locations(self):
        evil = h.Recorder(body=b"not a packument")
        up = self.fake.url.rsplit(":", 1)[1]
        tricks = [
            f"http://127.0.0.1:{evil.port}\\@127.0.0.1:{up}/x",
            f"//127.0.0.1:{evil.port}/x",
            f"/\\127.0.0.1:{evil.port}/x",
            f"http://127.0.0.1:{evil.port}#@127.0.0.1:{up}/x",
            f"http://127.0.0.1:{evil.port}?@127.0.0.1:{up}/x",
            f"http://user:pass@127.0.0.1:{evil.port}/x",
            f"http://127.0.0.1:{up}@127.0.0.1:{evil.port}/x",
            f"HTTP://127.0.0.1:{evil.port}/x",
            f"hTtP://127.0.0.1:{evil.port}/x",
        ]
        path = f"{P42}/@acme%2fui"
        try:
            for trick in tricks:
                for token, carrier in self.CARRIERS:
                    self.fake.override(path, 302, {"Location": trick})
                    self.via(path, token, carrier)
                    self.fake.clear_overrides()
                    seen = evil.credentials_seen()
                    self.assertEqual(seen, [], f"{carrier} via {trick!r} reached {seen}")
        finally:
            evil.stop()


class CaseVariants(unittest.TestCase):
    """3. No case variant of a protected or pinned name reaches a public registry."""

    def test_rules_and_pins_ignore_case(self):
        public = h.Recorder(status=404, body=b'{"error":"Not found"}')
        fake = h.Fake()
        config = (
            f'[forwarding]\nnpm_registry = "{public.url}"\n\n'
            '[[forwarding.rules]]\nmatch = "@acme/*"\nforward = false\n\n'
            '[[forwarding.rules]]\nmatch = "*"\nforward = true\n'
        )
        packrat = h.Packrat(upstream=fake.url, config=config).start()
        try:
            for spelling in ("@ACME%2fsecret", "@Acme%2fsecret", "@acme%2FSECRET", "@aCmE/secret"):
                for prefix in ("/api/v4/packages/npm", P42, "/api/v4/projects/7/packages/npm"):
                    h.get(f"{packrat.url}{prefix}/{spelling}", h.token_headers(h.ALICE))
            self.assertEqual([r["path"] for r in public.requests() if "secret" in r["path"].lower()], [])
        finally:
            packrat.cleanup()
        # A pin alone (no rule for the scope): @acme/util is served by GitLab, then case
        # variants of it are never looked up publicly.
        config = f'[forwarding]\nnpm_registry = "{public.url}"\n\n[[forwarding.rules]]\nmatch = "*"\nforward = true\n'
        packrat = h.Packrat(upstream=fake.url, config=config).start()
        try:
            self.assertEqual(h.get(f"{packrat.url}{P42}/@acme%2futil", h.token_headers(h.ALICE)).status, 200)
            for spelling in ("@Acme%2futil", "@ACME%2fUTIL", "@acme%2fUtil"):
                for prefix in ("/api/v4/projects/7/packages/npm", P42, "/api/v4/packages/npm"):
                    r = h.get(f"{packrat.url}{prefix}/{spelling}", h.token_headers(h.ALICE))
                    self.assertNotEqual(r.status, 200, f"{prefix}/{spelling}")
            self.assertEqual([r["path"] for r in public.requests() if "util" in r["path"].lower()], [])
        finally:
            packrat.cleanup()
            fake.stop()
            public.stop()


class PublicTarballOrigins(unittest.TestCase):
    """4. A public packument cannot make packrat fetch from another host (SSRF), and a public
    tarball without a checksum is never cached."""

    def test_tarballs_only_from_the_registry(self):
        internal = h.Recorder(body=b"internal secret")
        good = tgz("leftish", "1.0.0")
        registry = h.Recorder(status=404, body=b"{}")
        doc = {
            "name": "leftish",
            "dist-tags": {"latest": "1.2.0"},
            "versions": {
                "1.0.0": {"name": "leftish", "version": "1.0.0", "dist": {
                    "tarball": f"{internal.url}/secret.tgz", "shasum": hashlib.sha1(b"internal secret").hexdigest()}},
                "1.1.0": {"name": "leftish", "version": "1.1.0", "dist": {"tarball": f"{registry.url}/leftish/-/leftish-1.1.0.tgz"}},
                "1.2.0": {"name": "leftish", "version": "1.2.0", "dist": {
                    "tarball": f"{registry.url}/leftish/-/leftish-1.2.0.tgz", "shasum": hashlib.sha1(good).hexdigest()}},
            },
        }
        registry.routes["/leftish"] = (200, {"Content-Type": "application/json"}, json.dumps(doc).encode())
        registry.routes["/leftish/-/leftish-1.1.0.tgz"] = (200, {}, good)
        registry.routes["/leftish/-/leftish-1.2.0.tgz"] = (200, {}, good)
        fake = h.Fake()
        config = f'[forwarding]\nnpm_registry = "{registry.url}"\n\n[[forwarding.rules]]\nmatch = "*"\nforward = true\n'
        packrat = h.Packrat(upstream=fake.url, config=config).start()
        base = f"{packrat.url}/api/v4/packages/npm"
        try:
            self.assertEqual(h.get(f"{base}/leftish").status, 200)
            r = h.get(f"{base}/leftish/-/leftish-1.0.0.tgz")
            self.assertNotEqual(r.status, 200)
            self.assertEqual(internal.requests(), [], "packrat fetched from a host the registry named")
            for _ in range(2):
                r = h.get(f"{base}/leftish/-/leftish-1.1.0.tgz")
                self.assertNotEqual(r.header("x-packrat-cache"), "hit", "a tarball without a checksum was cached")
            ok = h.get(f"{base}/leftish/-/leftish-1.2.0.tgz")
            self.assertEqual((ok.status, ok.body), (200, good))
        finally:
            packrat.cleanup()
            fake.stop()
            registry.stop()
            internal.stop()


class RateLimits(Base):
    """5. A 429 from GitLab never extends a decision."""

    config = '[cache]\nauth_ttl = "1s"\n'

    def test_revoked_token_and_429(self):
        path = f"{P42}/@acme/app/-/@acme/app-1.0.0.tgz"
        self.assertEqual(self.via(path, h.REVOKED).status, 200)
        self.fake.control("POST", "tokens/revoke", {"token": h.REVOKED})
        self.fake.fault("/api/v4/", "429")
        try:
            time.sleep(1.2)
            for _ in range(3):
                r = self.via(path, h.REVOKED)
                self.assertNotEqual(r.status, 200, r)
        finally:
            self.fake.clear_faults()


def read_bundle(path):
    with tarfile.open(path) as t:
        return [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]


def write_bundle(path, members):
    with tarfile.open(path, "w") as t:
        for m, data in members:
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            info.mode = m.mode
            t.addfile(info, io.BytesIO(data))


def forge_tarball(bundle, out):
    """Swap the npm tarball's blob for other bytes and make the manifest agree with itself."""
    members = read_bundle(bundle)
    files = {m.name: data for m, data in members}
    index = files["index.jsonl"].decode().splitlines()
    evil = tgz("@acme/util", "1.1.0", "evil()")
    new = hashlib.sha256(evil).hexdigest()
    old = None
    lines = []
    for line in index:
        rec = json.loads(line)
        if rec["tree"] == "blobs" and rec["key"].startswith("npm-tgz:"):
            old = rec["value"]["digest"]
            rec["value"]["digest"] = new
            rec["value"]["size"] = len(evil)
        lines.append(json.dumps(rec))
    index_bytes = ("\n".join(lines) + "\n").encode()
    manifest = json.loads(files["manifest.json"])
    manifest["index_sha256"] = hashlib.sha256(index_bytes).hexdigest()
    for b in manifest["blobs"]:
        if b["sha256"] == old:
            b["sha256"], b["size"] = new, len(evil)
    manifest["total_bytes"] = sum(b["size"] for b in manifest["blobs"])
    out_members = []
    for m, data in members:
        if m.name == "manifest.json":
            data = json.dumps(manifest, indent=2).encode()
        elif m.name == "manifest.sig":
            continue
        elif m.name == "index.jsonl":
            data = index_bytes
        elif m.name == f"blobs/{old}":
            m = tarfile.TarInfo(f"blobs/{new}")
            m.mode = 0o644
            data = evil
        out_members.append((m, data))
    write_bundle(out, out_members)
    return evil


class Bundles(unittest.TestCase):
    """6. A forged but self-consistent bundle is refused; signed bundles are checked."""

    @classmethod
    def setUpClass(cls):
        cls.fake = h.Fake()
        cls.dir = tempfile.mkdtemp()
        listing = os.path.join(cls.dir, "packrat.list")
        with open(listing, "w") as f:
            f.write("npm @acme/util@1.1.0 project=42\n")
        cls.syncer = h.Packrat(upstream=cls.fake.url)
        cls.syncer.run("sync", listing, env={"PACKRAT_UPSTREAM_TOKEN": h.ALICE})
        cls.key = os.path.join(cls.dir, "mirror.key")
        cls.syncer.run("keygen", "--out", cls.key)
        cls.plain = os.path.join(cls.dir, "plain.tar")
        cls.syncer.run("export", "--out", cls.plain)
        cls.signed = os.path.join(cls.dir, "signed.tar")
        cls.syncer.run("export", "--out", cls.signed, "--sign", cls.key)

    @classmethod
    def tearDownClass(cls):
        cls.syncer.cleanup()
        cls.fake.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def mirror(self, trusted=None):
        cfg = "[cache]\noffline = true\n"
        if trusted:
            cfg += f"\n[offline]\ntrusted_keys = {json.dumps(trusted)}\n"
        return h.Packrat(config=cfg)

    def test_forged_tarball_is_refused_by_import(self):
        forged = os.path.join(self.dir, "forged.tar")
        forge_tarball(self.plain, forged)
        m = self.mirror()
        try:
            r = m.run("import", forged, check=False)
            self.assertNotEqual(r.returncode, 0, r.stdout)
            self.assertIn("shasum", (r.stdout + r.stderr).lower())
            # Nothing was imported: the mirror holds no tarball.
            self.assertIn("0 blobs", m.run("verify").stdout)
        finally:
            m.cleanup()

    def test_trusted_keys_refuse_unsigned_and_accept_signed(self):
        pub = open(self.key + ".pub", encoding="utf-8").read().strip()
        m = self.mirror(trusted=[pub])
        try:
            r = m.run("import", self.plain, check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("signature", (r.stdout + r.stderr).lower())
            self.assertIn("0 blobs", m.run("verify").stdout, "a refused bundle wrote nothing")
            m.run("import", self.signed)
            m.start()
            r = h.get(f"{m.url}{P42}/@acme/util/-/@acme/util-1.1.0.tgz")
            self.assertEqual(r.status, 200)
        finally:
            m.cleanup()

    def test_a_signature_by_another_key_is_refused(self):
        other = os.path.join(self.dir, "other.key")
        self.syncer.run("keygen", "--out", other)
        pub = open(other + ".pub", encoding="utf-8").read().strip()
        m = self.mirror(trusted=[pub])
        try:
            r = m.run("import", self.signed, check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("signature", (r.stdout + r.stderr).lower())
        finally:
            m.cleanup()

    def test_a_tampered_signed_bundle_is_refused(self):
        pub = open(self.key + ".pub", encoding="utf-8").read().strip()
        members = read_bundle(self.signed)
        tampered = os.path.join(self.dir, "tampered.tar")
        out = []
        for m, data in members:
            if m.name == "manifest.json":
                doc = json.loads(data)
                doc["created_at"] += 1
                data = json.dumps(doc, indent=2).encode()
            out.append((m, data))
        write_bundle(tampered, out)
        mirror = self.mirror(trusted=[pub])
        try:
            r = mirror.run("import", tampered, check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("signature", (r.stdout + r.stderr).lower())
        finally:
            mirror.cleanup()


class GoAmplification(Base):
    """7. One /go/ request costs a small, constant number of upstream requests."""

    config = f'[go]\nhost = "{h.GO_HOST}"\n'

    def test_deep_module_paths(self):
        deep = "/".join(["a"] * 500)
        self.fake.reset_requests()
        r = self.via(f"/go/gitlab.example.com/{deep}/@v/list", h.ALICE)
        self.assertIn(r.status, (404, 401, 400))
        first = self.fake.requests()["total"]
        self.assertLessEqual(first, 21, first)
        self.via(f"/go/gitlab.example.com/{deep}/@v/list", h.ALICE)
        self.assertEqual(self.fake.requests()["total"], first, "the repeat asked GitLab again")
        # Another module below the same absent prefixes: nothing asked again.
        self.via(f"/go/gitlab.example.com/{deep}/other/@v/list", h.ALICE)
        self.assertLessEqual(self.fake.requests()["total"], first + 1)


class LockfileNesting(unittest.TestCase):
    """8. A lockfile nested beyond reason is refused with a message, never a crash."""

    def run_sync(self, name, text):
        d = tempfile.mkdtemp()
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        syncer = h.Packrat()
        try:
            r = syncer.run("sync", path, check=False, timeout=60)
        finally:
            syncer.cleanup()
            shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(r.returncode, 1, f"{name}: exit {r.returncode}\n{r.stdout}\n{r.stderr[-2000:]}")
        self.assertIn(name, r.stdout + r.stderr)
        return r

    def test_deep_yaml_block_sequences(self):
        deep = "- " * 20000 + "x\n"
        self.run_sync("pnpm-lock.yaml", "lockfileVersion: '9.0'\npackages:\n  " + deep)
        self.run_sync("yarn.lock", "__metadata:\n  version: 8\n\n\"a@npm:1\":\n  x: " + deep)

    def test_deep_yaml_mappings(self):
        deep = "".join(f"{' ' * i}k:\n" for i in range(3000))
        self.run_sync("pnpm-lock.yaml", "lockfileVersion: '9.0'\n" + deep)

    def test_deep_json(self):
        deep = '{"lockfileVersion": 3, "packages": ' + "[" * 100000 + "]" * 100000 + "}"
        self.run_sync("package-lock.json", deep)
        self.run_sync("bun.lock", deep.replace('"packages"', '"workspaces": {}, "packages"'))


class IdleConnections(Base):
    """9. Silent and idle connections are closed; a flood of them never stops /-/health."""

    config = ""

    @classmethod
    def setUpClass(cls):
        cls.fake = h.Fake()
        cls.packrat = h.Packrat(
            upstream=cls.fake.url,
            config="",
            timeout="10s",
            server_extra='header_read_timeout = "2s"\nidle_timeout = "3s"\nmax_connections = 1000\n',
        ).start()

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.packrat.port), timeout=10)
        return s

    def closed_within(self, sock, seconds):
        sock.settimeout(seconds)
        started = time.monotonic()
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    return time.monotonic() - started
        except (socket.timeout, TimeoutError):
            return None
        except ConnectionResetError:
            return time.monotonic() - started

    def test_silent_connection_is_closed(self):
        s = self.connect()
        took = self.closed_within(s, 10)
        self.assertIsNotNone(took, "a silent connection stayed open")
        self.assertLess(took, 6)

    def test_half_sent_head_is_closed(self):
        s = self.connect()
        s.sendall(b"GET /-/health HTTP/1.1\r\nHost: x\r\n")
        self.assertIsNotNone(self.closed_within(s, 10))

    def test_idle_keepalive_is_closed(self):
        s = self.connect()
        s.sendall(b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        self.assertIn(b"200", s.recv(4096))
        self.assertIsNotNone(self.closed_within(s, 10), "an idle keep-alive connection stayed open")

    def test_idle_h2c_is_closed(self):
        s = self.connect()
        # HTTP/2 prior knowledge: the preface and an empty SETTINGS frame, then silence.
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        self.assertIsNotNone(self.closed_within(s, 15), "an idle h2c connection stayed open")

    def read_responses(self, sock, count):
        """The status lines of `count` responses (Content-Length or chunked) read off sock."""
        sock.settimeout(10)
        data, statuses = b"", []
        while len(statuses) < count:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                self.assertTrue(chunk, f"closed after {len(statuses)} of {count} responses")
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if m:
                while len(data) < int(m.group(1)):
                    data += sock.recv(65536)
                data = data[int(m.group(1)):]
            else:
                while b"0\r\n\r\n" not in data:
                    data += sock.recv(65536)
                data = data.split(b"0\r\n\r\n", 1)[1]
            statuses.append(head.split(b"\r\n", 1)[0])
        self.assertEqual(data, b"", "bytes after the last response")
        return statuses

    def test_keepalive_serves_again_after_going_quiet(self):
        # A quiet keep-alive connection gives its buffers back (server/park.rs) and must
        # then serve its next request, whole or in pieces, like any other.
        s = self.connect()
        req = b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n"
        for pieces in ([req], [req[:9], req[9:]], [req[:-2], req[-2:]], [req[:1], req[1:]]):
            for piece in pieces:
                s.sendall(piece)
                time.sleep(0.3)
            self.assertEqual(self.read_responses(s, 1), [b"HTTP/1.1 200 OK"], pieces)
        s.close()

    def test_pipelined_requests_across_pauses(self):
        s = self.connect()
        req = b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(req * 3)
        self.assertEqual(self.read_responses(s, 3), [b"HTTP/1.1 200 OK"] * 3)
        # One and a half requests, a pause long enough to go quiet, then the rest.
        s.sendall(req + req[:20])
        time.sleep(0.5)
        s.sendall(req[20:] + req)
        self.assertEqual(self.read_responses(s, 3), [b"HTTP/1.1 200 OK"] * 3)
        s.close()

    def test_request_bodies_then_keepalive(self):
        s = self.connect()
        body = b'{"name":"x"}'
        post = (b"POST /api/v4/packages/npm/-/npm/v1/security/audits/quick HTTP/1.1\r\nHost: x\r\n"
                b"PRIVATE-TOKEN: " + h.ALICE.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        get = b"GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n"
        # The body ends in the head's blank line: it must be read as a body, not a quiet end.
        tricky = b"\r\n\r\n"
        tricky_post = post.replace(str(len(body)).encode(), b"4", 1)
        s.sendall(post)
        time.sleep(0.3)
        s.sendall(body)
        first = self.read_responses(s, 1)
        s.sendall(tricky_post)
        time.sleep(0.3)
        s.sendall(tricky)
        second = self.read_responses(s, 1)
        time.sleep(0.3)
        s.sendall(get)
        self.assertEqual(self.read_responses(s, 1), [b"HTTP/1.1 200 OK"])
        for status in first + second:
            self.assertRegex(status, rb"^HTTP/1.1 [2-4]\d\d ", status)
        s.close()

    def test_connection_close_is_honoured(self):
        s = self.connect()
        s.sendall(b"GET /-/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(self.read_responses(s, 1), [b"HTTP/1.1 200 OK"])
        self.assertIsNotNone(self.closed_within(s, 5), "Connection: close left it open")

    def test_flood_of_silent_connections(self):
        # More silent sockets than packrat's connection limit (server.max_connections, 1000
        # here): the new ones evict the longest-idle, so /-/health still answers at once.
        want = 1500
        socks = []
        try:
            for _ in range(want):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", self.packrat.port), timeout=10))
                except OSError:
                    break
            self.assertEqual(len(socks), want, "the test could not open its sockets")
            started = time.monotonic()
            r = h.get(f"{self.packrat.url}/-/health", timeout=10)
            self.assertEqual(r.status, 200)
            self.assertLess(time.monotonic() - started, 5)
        finally:
            for s in socks:
                s.close()


class HostileBodies(Base):
    """10. Bodies of routes other than publish are small and refused as they arrive."""

    def post_big(self, path, token, size, results, i):
        try:
            s = socket.create_connection(("127.0.0.1", self.packrat.port), timeout=30)
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n"
            if token:
                head += f"PRIVATE-TOKEN: {token}\r\n"
            s.sendall((head + "\r\n").encode())
            chunk = b"x" * (1 << 20)
            sent = 0
            try:
                while sent < size:
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            s.settimeout(30)
            results[i] = s.recv(200)
            s.close()
        except OSError as e:
            results[i] = repr(e).encode()

    def test_big_anonymous_and_authenticated_audit_bodies(self):
        pid = self.packrat.pid
        before = h.rss_kib(pid)
        for token in (None, h.ALICE):
            results = [None] * 3
            threads = [
                threading.Thread(target=self.post_big, args=(f"{P42}/-/npm/v1/security/advisories/bulk", token, 60 << 20, results, i))
                for i in range(3)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            for r in results:
                self.assertTrue(r and (b"401" in r or b"413" in r), r)
        peak = h.rss_kib(pid, "VmHWM")
        self.assertLess(peak - before, 40 * 1024, f"RSS grew from {before} KiB to a peak of {peak} KiB")


if __name__ == "__main__":
    unittest.main()
