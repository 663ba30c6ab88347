"""N packrat nodes on one S3-compatible bucket (issue 14, SPEC section 8).

Every node is the release binary as its own process with its own data directory; the bucket
is a real ``moto_server`` (PyPI ``moto[server]``) on a free loopback port, the bucket created
through the S3 API. Covered: a tree installed through node A is installed through node B with
no blob downloaded from GitLab again (npm and go, the real clients); a pin made on A holds on
B; a stampede spread over two nodes makes at most two upstream requests; ``kill -9`` in the
middle of a multipart upload leaves no object; the bucket stopped and restarted (503 naming
the object store, disk-tier hits still served, recovery without a restart); a 1 GiB blob
through two nodes with a flat peak RSS.

Tool policy as in harness.py: under ``CI`` a missing moto_server fails, elsewhere it skips.
"""

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import unittest
import urllib.parse

import harness as h

P42 = "/api/v4/projects/42/packages/npm"
KEY_ID = "packrat-e2e-key"
SECRET = "packrat-e2e-secret"


def moto_bin():
    found = shutil.which("moto_server")
    if found:
        return found
    return h.require("moto_server", "moto_server (pip install 'moto[server]')")


class Moto:
    """A real S3 API server (moto) on its own port; ``stop``/``start`` keep the port."""

    def __init__(self, bucket="packrat"):
        self.bin = moto_bin()
        import boto3  # moto[server] depends on boto3

        self.boto3 = boto3
        self.port = h.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.process = None
        self.start()

    def start(self):
        self.process = h.Process([self.bin, "-H", "127.0.0.1", "-p", str(self.port)], name="moto")

        def up():
            try:
                return h.get(self.url + "/", timeout=2).status < 500
            except OSError:
                return False

        h.wait_until(up, 30, "moto_server to listen")
        self.s3().create_bucket(Bucket=self.bucket)

    def stop(self):
        if self.process:
            self.process.stop()
            self.process = None

    def s3(self):
        return self.boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )

    def keys(self, prefix=""):
        out = []
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def uploads_in_progress(self):
        return self.s3().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])


def s3_node(upstream, moto, extra="", local_cache="1GiB", tls=None, prefix=""):
    config = (
        f'[storage.s3]\nbucket = "{moto.bucket}"\nendpoint = "{moto.url}"\nallow_http = true\n'
        f'local_cache = "{local_cache}"\nprefix = "{prefix}"\n\n{extra}'
    )
    env = {"PACKRAT_STORAGE_BACKEND": "s3", "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    return h.Packrat(upstream=upstream, config=config, env=env, tls=tls)


def tarball_gets(fake):
    return sum(n for k, n in fake.requests()["by_path"].items() if k.startswith("GET ") and "/-/" in k)


PACKAGE_JSON = """{
  "name": "cluster-consumer",
  "version": "1.0.0",
  "private": true,
  "dependencies": {"@acme/app": "1.0.0", "@acme/ui": "2.0.0"}
}
"""


class TwoNodes(unittest.TestCase):
    """Nodes A and B on one bucket, in front of one fake GitLab."""

    @classmethod
    def setUpClass(cls):
        cls.moto = Moto()
        cls.fake = h.Fake()
        cls.public = h.Recorder(status=404, body=b'{"error":"Not found"}')
        forwarding = (
            f'[forwarding]\nnpm_registry = "{cls.public.url}"\n\n[[forwarding.rules]]\nmatch = "*"\nforward = true\n'
        )
        cls.a = s3_node(cls.fake.url, cls.moto, forwarding, prefix="edge/").start()
        cls.b = s3_node(cls.fake.url, cls.moto, forwarding, prefix="edge/").start()
        cls.works = []

    @classmethod
    def tearDownClass(cls):
        for n in (cls.a, cls.b):
            n.cleanup()
        cls.fake.stop()
        cls.public.stop()
        cls.moto.stop()
        for w in cls.works:
            w.cleanup()

    def install(self, node):
        work = h.Workdir("cluster-npm")
        self.works.append(work)
        registry = h.npm_prefix(node.url, "project")
        h.configure_node_client(work, "npm", node.url, registry, h.ALICE)
        work.write("package.json", PACKAGE_JSON)
        work.run(h.install_command("npm"))
        out = work.run([h.require("node"), "-p", "require('@acme/app/package.json').version + ' ' + require('@acme/ui/package.json').version"])
        self.assertEqual(out.stdout.split(), ["1.0.0", "2.0.0"])

    def test_a_tree_installed_through_a_is_installed_through_b_without_upstream_blob_downloads(self):
        self.install(self.a)
        self.assertGreater(tarball_gets(self.fake), 0, "A fetched the tarballs from GitLab")
        blobs = self.moto.keys("edge/blobs/sha256/")
        self.assertTrue(blobs, "A wrote its blobs into the bucket under the prefix")
        self.assertTrue(self.moto.keys("edge/records/blobs/"), "and the shared records")
        self.fake.reset_requests()
        self.install(self.b)
        by_path = self.fake.requests()["by_path"]
        self.assertEqual(tarball_gets(self.fake), 0, f"B downloaded tarballs from GitLab again: {by_path}")
        # B still asked GitLab about the caller and the metadata.
        self.assertTrue(any("/packages/npm/@acme" in k for k in by_path), by_path)

    def test_a_pin_made_on_one_node_holds_on_the_other(self):
        # A serves @acme/util from GitLab: pinned, for every node.
        self.assertEqual(h.get(f"{self.a.url}{P42}/@acme%2futil", h.token_headers(h.ALICE)).status, 200)
        self.assertTrue(self.moto.keys("edge/records/aux/"), "the pin is a shared record")
        # On B, GitLab's project 7 does not have it: a public lookup would follow, but the pin
        # from A blocks it.
        r = h.get(f"{self.b.url}/api/v4/projects/7/packages/npm/@acme%2futil", h.token_headers(h.ALICE))
        self.assertNotEqual(r.status, 200, r)
        self.assertEqual([x["path"] for x in self.public.requests() if "util" in x["path"].lower()], [])
        self.assertGreaterEqual(self.b.metric("packrat_dependency_confusion_blocked"), 1)

    def test_a_stampede_over_two_nodes_makes_at_most_two_upstream_requests(self):
        added = self.fake.control(
            "POST", "npm/add", {"project_id": 42, "name": "@acme/stampede", "version": "1.0.0", "size": 3 << 20}
        )
        direct = h.get(added["tarball"], h.token_headers(h.ALICE))
        self.assertEqual(direct.status, 200, direct)
        want = hashlib.sha256(direct.body).hexdigest()
        path = urllib.parse.urlsplit(added["tarball"]).path
        # Both nodes learn the packument first, so the tarball reads below are plain misses.
        for n in (self.a, self.b):
            self.assertEqual(h.get(f"{n.url}{P42}/@acme%2fstampede", h.token_headers(h.ALICE)).status, 200)
        self.fake.reset_requests()
        self.fake.fault("stampede-1.0.0.tgz", "slow", delay_ms=2)
        results = []
        lock = threading.Lock()

        def fetch(node):
            r = h.get(node.url + path, h.token_headers(h.ALICE), timeout=120)
            with lock:
                results.append((r.status, hashlib.sha256(r.body).hexdigest()))

        threads = [threading.Thread(target=fetch, args=(n,)) for n in (self.a, self.b) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        self.fake.clear_faults()
        self.assertEqual(len(results), 12)
        self.assertEqual({s for s, _ in results}, {200}, results)
        self.assertEqual({d for _, d in results}, {want})
        self.assertLessEqual(self.fake.count("stampede-1.0.0.tgz", "GET"), 2)
        self.assertEqual(len([k for k in self.moto.keys("edge/blobs/") if k.endswith(want)]), 1)


class BucketOutage(unittest.TestCase):
    """The bucket goes away and comes back while the nodes run."""

    def test_503_naming_the_object_store_then_recovery_without_restart(self):
        moto = Moto()
        fake = h.Fake()
        a = s3_node(fake.url, moto).start()
        b = s3_node(fake.url, moto).start()
        try:
            util = f"{P42}/@acme/util/-/@acme/util-1.0.0.tgz"
            meta = f"{P42}/@acme%2futil"
            for n in (a, b):
                self.assertEqual(h.get(n.url + meta, h.token_headers(h.ALICE)).status, 200)
            first = h.get(a.url + util, h.token_headers(h.ALICE))
            self.assertEqual(first.status, 200)
            # The client has every verified byte before the upload lands: wait for it.
            h.wait_until(lambda: moto.keys("records/blobs/"), 30, "the blob's shared record")
            moto.stop()
            # On A's disk tier: still served.
            again = h.get(a.url + util, h.token_headers(h.ALICE))
            self.assertEqual((again.status, again.body), (200, first.body), again.body[:600])
            # Anything that needs the bucket: a 503 that names the object store.
            other = f"{P42}/@acme/util/-/@acme/util-1.1.0.tgz"
            for n, path in ((a, other), (b, util)):
                r = h.get(n.url + path, h.token_headers(h.ALICE), timeout=60)
                self.assertEqual(r.status, 503, r)
                self.assertIn("object store", r.json()["message"])
            moto.start()
            # Back: no restart needed.
            r = h.get(a.url + other, h.token_headers(h.ALICE), timeout=60)
            self.assertEqual(r.status, 200, r)
            r = h.get(b.url + util, h.token_headers(h.ALICE), timeout=60)
            self.assertEqual((r.status, r.body), (200, first.body))
            self.assertTrue(moto.keys("blobs/sha256/"))
        finally:
            a.cleanup()
            b.cleanup()
            fake.stop()
            moto.stop()


class CorruptObject(unittest.TestCase):
    """An object that no longer hashes to its name is never served: it is quarantined and
    the file fetched from GitLab again."""

    def test_a_corrupt_object_is_quarantined_and_refetched(self):
        moto = Moto()
        fake = h.Fake()
        a = s3_node(fake.url, moto).start()
        b = s3_node(fake.url, moto).start()
        try:
            meta, util = f"{P42}/@acme%2futil", f"{P42}/@acme/util/-/@acme/util-1.0.0.tgz"
            for n in (a, b):
                self.assertEqual(h.get(n.url + meta, h.token_headers(h.ALICE)).status, 200)
            first = h.get(a.url + util, h.token_headers(h.ALICE))
            self.assertEqual(first.status, 200)
            h.wait_until(lambda: moto.keys("records/blobs/"), 30, "the blob's shared record")
            (key,) = moto.keys("blobs/sha256/")
            moto.s3().put_object(Bucket=moto.bucket, Key=key, Body=bytes(len(first.body)))
            fake.reset_requests()
            r = h.get(b.url + util, h.token_headers(h.ALICE))
            self.assertEqual((r.status, r.body), (200, first.body))
            self.assertEqual(fake.count("util-1.0.0.tgz", "GET"), 1, "fetched from GitLab again")
            self.assertEqual(len(moto.keys("quarantine/")), 1)
            h.wait_until(lambda: moto.keys("blobs/sha256/") == [key], 30, "the good copy uploaded again")
            body = moto.s3().get_object(Bucket=moto.bucket, Key=key)["Body"].read()
            self.assertEqual(body, first.body)
        finally:
            a.cleanup()
            b.cleanup()
            fake.stop()
            moto.stop()


class Maintenance(unittest.TestCase):
    """verify re-hashes the bucket's objects; gc evicts from the bucket by last access."""

    def test_verify_and_gc_on_the_bucket(self):
        moto = Moto()
        fake = h.Fake()
        a = s3_node(fake.url, moto).start()
        try:
            for v in ("1.0.0", "1.1.0"):
                self.assertEqual(h.get(f"{a.url}{P42}/@acme%2futil", h.token_headers(h.ALICE)).status, 200)
                r = h.get(f"{a.url}{P42}/@acme/util/-/@acme/util-{v}.tgz", h.token_headers(h.ALICE))
                self.assertEqual(r.status, 200)
            h.wait_until(lambda: len(moto.keys("records/blobs/")) == 2, 30, "both shared records")
            a.stop()
            out = a.run("verify").stdout
            self.assertIn("verify: ", out)
            self.assertIn("0 faults", out)
            # export streams the blobs from the bucket; import writes them into another prefix.
            bundle = os.path.join(a.tmp, "bundle.tar")
            a.run("export", "--out", bundle)
            c = s3_node(fake.url, moto, prefix="copy/")
            try:
                c.run("import", bundle)
                self.assertEqual(
                    sorted(k.split("/")[-1] for k in moto.keys("copy/blobs/sha256/")),
                    sorted(k.split("/")[-1] for k in moto.keys("blobs/sha256/")),
                )
                self.assertEqual(len(moto.keys("copy/records/blobs/")), 2, "the imported files are shared")
            finally:
                c.cleanup()
            # A corrupted object is found by re-hashing the bucket's copy and quarantined.
            victim = moto.keys("blobs/sha256/")[0]
            moto.s3().put_object(Bucket=moto.bucket, Key=victim, Body=b"corrupt")
            r = a.run("verify", check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("bad blob", r.stdout)
            self.assertEqual(len(moto.keys("blobs/sha256/")), 1)
            self.assertEqual(len(moto.keys("quarantine/")), 1)
            out = a.run("gc", "--max-size", "1").stdout
            self.assertIn("evicted 1 blobs", out)
            self.assertEqual(moto.keys("blobs/sha256/"), [])
            # The access-time batches read are replaced by one.
            self.assertEqual(len(moto.keys("records/atime/")), 1)
        finally:
            a.cleanup()
            fake.stop()
            moto.stop()


# ---- a 1 GiB blob ------------------------------------------------------------------------------

BIG = 1 << 30
BLOCK = os.urandom(1 << 20)


def big_hashes():
    sha1, sha256, sha512 = hashlib.sha1(), hashlib.sha256(), hashlib.sha512()
    for _ in range(BIG // len(BLOCK)):
        for x in (sha1, sha256, sha512):
            x.update(BLOCK)
    import base64

    return sha1.hexdigest(), sha256.hexdigest(), "sha512-" + base64.b64encode(sha512.digest()).decode()


class BigUpstream:
    """A GitLab npm project (42) holding one package, @acme/big, whose 1 GiB tarball is
    streamed from a repeated block (never held in memory)."""

    def __init__(self):
        self.sha1, self.sha256, self.integrity = big_hashes()
        self.gets = 0
        self.delay = 0.0
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                base = f"http://127.0.0.1:{up.port}{P42}"
                if path == f"{P42}/@acme/big":
                    doc = {
                        "name": "@acme/big",
                        "dist-tags": {"latest": "1.0.0"},
                        "versions": {
                            "1.0.0": {
                                "name": "@acme/big",
                                "version": "1.0.0",
                                "dist": {
                                    "shasum": up.sha1,
                                    "integrity": up.integrity,
                                    "tarball": f"{base}/@acme/big/-/@acme/big-1.0.0.tgz",
                                },
                            }
                        },
                    }
                    body = json.dumps(doc).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if path == f"{P42}/@acme/big/-/@acme/big-1.0.0.tgz":
                    up.gets += 1
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(BIG))
                    self.end_headers()
                    try:
                        for _ in range(BIG // len(BLOCK)):
                            self.wfile.write(BLOCK)
                            if up.delay:
                                time.sleep(up.delay)
                    except OSError:
                        pass
                    return
                body = b'{"message":"404 Not Found"}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def stream_sha256(url, timeout=600):
    """GET ``url`` and hash the body as it arrives: (status, sha256, length)."""
    import http.client

    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", u.path)
        r = conn.getresponse()
        d, n = hashlib.sha256(), 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            d.update(chunk)
            n += len(chunk)
        return r.status, d.hexdigest(), n
    finally:
        conn.close()


class BigBlob(unittest.TestCase):
    """1 GiB through the bucket: kill -9 mid-upload leaves nothing, and two nodes serve it with
    a flat peak RSS (the disk tiers are too small to hold it, so B streams it from the bucket)."""

    @classmethod
    def setUpClass(cls):
        cls.moto = Moto()
        cls.up = BigUpstream()

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        cls.moto.stop()

    PATH = f"{P42}/@acme/big/-/@acme/big-1.0.0.tgz"

    def blob_key(self):
        s = self.up.sha256
        return f"blobs/sha256/{s[0:2]}/{s[2:4]}/{s}"

    def test_1_kill_9_mid_upload_leaves_no_object(self):
        node = s3_node(self.up.url, self.moto, local_cache="64MiB").start()
        try:
            t = threading.Thread(target=stream_sha256, args=(node.url + self.PATH,), daemon=True)
            t.start()
            h.wait_until(lambda: self.moto.uploads_in_progress(), 300, "the multipart upload to start")
            node.kill9()
            self.assertNotIn(self.blob_key(), self.moto.keys(), "a killed upload left an object")
            self.assertEqual([k for k in self.moto.keys() if "records/blobs" in k], [])
        finally:
            node.cleanup()
        # Incomplete multipart uploads are invisible; a lifecycle rule aborts them (README).
        for u in self.moto.uploads_in_progress():
            self.moto.s3().abort_multipart_upload(Bucket=self.moto.bucket, Key=u["Key"], UploadId=u["UploadId"])

    def test_2_a_gib_through_two_nodes_with_flat_rss(self):
        a = s3_node(self.up.url, self.moto, local_cache="64MiB").start()
        b = s3_node(self.up.url, self.moto, local_cache="64MiB").start()
        try:
            gets = self.up.gets
            status, digest, n = stream_sha256(a.url + self.PATH)
            self.assertEqual((status, digest, n), (200, self.up.sha256, BIG))
            h.wait_until(lambda: self.blob_key() in self.moto.keys(), 300, "the blob to land in the bucket")
            h.wait_until(lambda: self.moto.keys("records/blobs/"), 30, "its shared record")
            status, digest, n = stream_sha256(b.url + self.PATH)
            self.assertEqual((status, digest, n), (200, self.up.sha256, BIG))
            self.assertEqual(self.up.gets - gets, 1, "B served the bucket's copy")
            for node in (a, b):
                peak = h.rss_kib(node.pid, "VmHWM")
                print(f"peak RSS of a node that served 1 GiB: {peak} KiB")
                self.assertLess(peak, 200 * 1024, f"peak RSS {peak} KiB for a 1 GiB blob")
        finally:
            a.cleanup()
            b.cleanup()


GO_MOD = """module example.com/consumer

go 1.19
"""

GO_MAIN = """package main

import (
	"fmt"

	private "gitlab.example.com/acme/gomods"
)

func main() {
	fmt.Println(private.Hello())
}
"""


class GoTwoNodes(unittest.TestCase):
    """The real go command through A, then through B: B downloads no zip from GitLab."""

    def test_go_through_two_nodes(self):
        go = h.require("go")
        moto = Moto()
        fake = h.Fake()
        tls = h.Tls()
        extra = f'[go]\nhost = "{h.GO_HOST}"\n'
        a = s3_node(fake.url, moto, extra, tls=tls).start()
        b = s3_node(fake.url, moto, extra, tls=tls).start()
        works = []
        try:
            for node in (a, b):
                work = h.Workdir("cluster-go")
                works.append(work)
                work.write("go.mod", GO_MOD)
                work.write("main.go", GO_MAIN)
                env = h.go_env(
                    work,
                    f"{node.url}/api/v4/projects/44/packages/go,off",
                    netrc=f"machine 127.0.0.1 login me password {h.ALICE}\n",
                    ca=tls.cert,
                )
                if node is b:
                    fake.reset_requests()
                work.run([go, "mod", "tidy"], env=env)
                out = work.run([go, "run", "."], env=env)
                self.assertIn("v1.1.0", out.stdout)
            zips = fake.count(".zip", "GET")
            self.assertEqual(zips, 0, f"B downloaded module zips from GitLab: {fake.requests()['by_path']}")
        finally:
            a.cleanup()
            b.cleanup()
            fake.stop()
            moto.stop()
            for w in works:
                w.cleanup()


if __name__ == "__main__":
    unittest.main()
