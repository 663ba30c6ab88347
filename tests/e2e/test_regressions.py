"""Regression tests for the bugs independent tries found in the release binary (issue 10).

Each class reproduces one report through ``target/release/packrat`` and the independent fake
GitLab; where "what GitLab answers" is the question, the same request is sent to the fake
directly and the two answers are compared.
"""

import base64
import http.client
import hashlib
import io
import json
import os
import tempfile
import unittest
import zipfile

import harness as h

P42 = "/api/v4/projects/42/packages/npm"


def npm_publish_body(name, version, payload=b"", tag="latest", body_name=None):
    """What ``npm publish`` sends, built by hand (a real tarball is not needed by GitLab)."""
    import gzip
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        pj = json.dumps({"name": body_name or name, "version": version}).encode()
        info = tarfile.TarInfo("package/package.json")
        info.size = len(pj)
        tar.addfile(info, io.BytesIO(pj))
        info = tarfile.TarInfo("package/index.js")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    tgz = gzip.compress(buf.getvalue(), mtime=0)
    stored = body_name or name
    shasum = hashlib.sha1(tgz).hexdigest()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    return {
        "_id": stored,
        "name": stored,
        "dist-tags": {tag: version},
        "versions": {
            version: {
                "name": stored,
                "version": version,
                "dist": {"shasum": shasum, "integrity": integrity, "tarball": f"http://x/{stored}-{version}.tgz"},
            }
        },
        "_attachments": {f"{stored}-{version}.tgz": {"content_type": "application/octet-stream", "data": base64.b64encode(tgz).decode(), "length": len(tgz)}},
    }


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

    def direct(self, path, token=None, carrier="PRIVATE-TOKEN", method="GET", body=None, headers=None, **kw):
        hdrs = {**h.token_headers(token, carrier), **(headers or {})}
        return h.request(method, self.fake.url + path, hdrs, body, **kw)


class GoZips(Base):
    """The release binary inflates and checks GitLab's deflated zips (it once answered 502)."""

    config = f'[go]\nhost = "{h.GO_HOST}"\n'

    def test_deflated_zip_is_served_and_cached(self):
        path = "/api/v4/projects/8/packages/go/gitlab.example.com/pub/gomods/@v/v1.2.0.zip"
        upstream = self.direct(path)
        self.assertEqual(upstream.status, 200)
        with zipfile.ZipFile(io.BytesIO(upstream.body)) as z:
            self.assertTrue(all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist() if i.file_size))
        first = self.via(path)
        self.assertEqual(first.status, 200, first)
        self.assertEqual(first.body, upstream.body)
        second = self.via(path)
        self.assertEqual(second.header("x-packrat-cache"), "hit")
        self.assertEqual(second.body, upstream.body)


class PublishAfter404(Base):
    """A caller who got a 404, then publishes, sees the package at once (negative_ttl is 1h)."""

    config = '[cache]\nnegative_ttl = "1h"\nauth_ttl = "1h"\n'

    def assert_visible(self, name, version, prefix=P42):
        enc = name.replace("/", "%2f")
        for token, carrier in [(h.ALICE, "PRIVATE-TOKEN"), (h.ALICE, "Bearer"), (h.MAINT, "PRIVATE-TOKEN")]:
            r = self.via(f"{prefix}/{enc}", token, carrier)
            self.assertEqual(r.status, 200, f"{carrier} {token}: {r}")
            self.assertIn(version, r.json()["versions"])

    def test_publish_through_packrat_after_a_404_by_each_carrier(self):
        name = "@acme/fresh"
        for carrier in ("PRIVATE-TOKEN", "Bearer"):
            self.assertEqual(self.via(f"{P42}/@acme%2ffresh", h.ALICE, carrier).status, 404)
        r = self.via(f"{P42}/@acme%2ffresh", h.ALICE, "Bearer", method="PUT", body=npm_publish_body(name, "1.0.0"))
        self.assertEqual(r.status, 200, r)
        self.assert_visible(name, "1.0.0")
        self.assertNotIn("updating the cache failed", self.packrat.logs())

    def test_publish_whose_body_names_another_package(self):
        self.assertEqual(self.via(f"{P42}/@acme%2fstored", h.ALICE).status, 404)
        body = npm_publish_body("@acme/url-name", "1.0.0", body_name="@acme/stored")
        r = self.via(f"{P42}/@acme%2furl-name", h.ALICE, method="PUT", body=body)
        self.assertEqual(r.status, 200, r)
        self.assert_visible("@acme/stored", "1.0.0")

    def publish_with(self, client):
        name = f"@acme/pub-{client}"
        registry = h.npm_prefix(self.packrat.url, "project")
        work = h.Workdir(f"publish-{client}")
        try:
            self.assertEqual(self.via(f"{P42}/{name.replace('/', '%2f')}", h.ALICE).status, 404)
            h.configure_node_client(work, client, self.packrat.url, registry, h.ALICE, publish=True)
            work.write("package.json", json.dumps({"name": name, "version": "1.0.0", "main": "index.js"}))
            work.write("index.js", "module.exports = 1;\n")
            if client == "yarn4":
                work.run(h.install_command("yarn4"))
                work.run(h.NODE_CLIENTS["yarn4"]() + ["npm", "publish"])
            elif client == "pnpm":
                work.run(h.NODE_CLIENTS["pnpm"]() + ["publish", "--no-git-checks"])
            else:
                work.run(h.NODE_CLIENTS[client]() + ["publish"])
            self.assert_visible(name, "1.0.0")
        finally:
            work.cleanup()

    def test_npm_publish(self):
        self.publish_with("npm")

    def test_pnpm_publish(self):
        self.publish_with("pnpm")

    def test_yarn4_publish(self):
        self.publish_with("yarn4")


class Unpublish(Base):
    """``npm unpublish`` reaches GitLab as npm sends it, and GitLab's answer comes back."""

    def test_unpublish_is_forwarded(self):
        # The write npm sends to remove a whole package: packrat forwards it, GitLab's answer.
        up = self.direct(f"{P42}/@acme%2futil/-rev/1", h.MAINT, method="DELETE")
        via = self.via(f"{P42}/@acme%2futil/-rev/1", h.MAINT, method="DELETE")
        self.assertEqual((via.status, via.body), (up.status, up.body))
        self.assertGreaterEqual(self.fake.count(f"DELETE {P42}/@acme%2futil/-rev/1") + self.fake.count("/-rev/1", "DELETE"), 2)
        work = h.Workdir("unpublish")
        try:
            registry = h.npm_prefix(self.packrat.url, "project")
            h.configure_node_client(work, "npm", self.packrat.url, registry, h.MAINT)
            r = work.run([h.require("npm"), "unpublish", "@acme/util@1.0.0", "--registry", registry], check=False)
            text = r.stdout + r.stderr
            self.assertNotIn("valid file path", text)
            self.assertNotIn("405", text)
        finally:
            work.cleanup()

    def test_no_climbing_out_of_the_prefix(self):
        r = self.via(f"{P42}/..%2f..%2f..%2fusers", h.MAINT, method="DELETE")
        self.assertEqual(r.status, 400)


class Refusals(Base):
    """Each route's refusal is GitLab's own answer for that route, cold and cached."""

    ROUTES = [
        f"{P42}/@acme%2futil",
        f"{P42}/@acme/util/-/@acme/util-1.0.0.tgz",
        f"{P42}/-/package/@acme%2futil/dist-tags",
        "/api/v4/projects/42/packages",
        "/api/v4/projects/42/packages/1",
        "/api/v4/projects/42/packages/1/package_files",
        "/api/v4/projects/44/packages/go/gitlab.example.com/acme/gomods/@v/list",
        "/api/v4/projects/44/packages/go/gitlab.example.com/acme/gomods/@v/v1.0.0.info",
    ]
    CALLERS = [
        (None, "PRIVATE-TOKEN"),
        (h.ALICE, "Basic"),
        (h.DEPLOY_READ, "PRIVATE-TOKEN"),
        (h.DEPLOY_READ, "Deploy-Token"),
        (h.BOB, "PRIVATE-TOKEN"),
        (h.BOB, "Bearer"),
        ("expired-pat", "PRIVATE-TOKEN"),
        ("job-finished", "Job-Token"),
        (h.JOB, "Job-Token"),
        (h.GUEST, "PRIVATE-TOKEN"),
        ("nonsense-token", "PRIVATE-TOKEN"),
    ]

    def compare_all(self, phase):
        mismatches = []
        for path in self.ROUTES:
            for token, carrier in self.CALLERS:
                up = self.direct(path, token, carrier)
                via = self.via(path, token, carrier)
                if up.status >= 400 or via.status >= 400:
                    same = via.status == up.status and (via.status < 400 or json.loads(via.body) == json.loads(up.body))
                    if not same:
                        mismatches.append(f"{phase} {carrier}:{token} {path}: GitLab {up.status} {up.body[:120]!r}, packrat {via.status} {via.body[:120]!r}")
        self.assertEqual(mismatches, [], "\n".join(mismatches))

    def test_refusals_match_gitlab(self):
        self.compare_all("cold")
        # Now the content is cached (fetched by an allowed caller): refusals must not change.
        for path in self.ROUTES:
            self.assertLess(self.via(path, h.ALICE).status, 300, path)
        self.compare_all("cached")


class Outage(Base):
    """With GitLab unreachable, an undecided caller gets 502 (504 on a timeout), the same
    whether or not the content is cached."""

    config = '[cache]\nauth_ttl = "1s"\n'
    upstream_timeout = "2s"

    def test_unreachable_is_502_cached_or_not(self):
        cached = f"{P42}/@acme/ui/-/@acme/ui-2.0.0.tgz"
        uncached = f"{P42}/@acme/ui/-/@acme/ui-2.1.0.tgz"
        self.assertEqual(self.via(cached, h.ALICE).status, 200)
        self.fake.down()
        try:
            a = self.via(cached, h.MAINT)
            b = self.via(uncached, h.MAINT)
            self.assertEqual(a.status, 502, a)
            self.assertEqual((a.status, a.body), (b.status, b.body))
        finally:
            self.fake.up()

    def test_timeout_is_504_cached_or_not(self):
        cached = f"{P42}/@acme/util/-/@acme/util-1.0.0.tgz"
        uncached = f"{P42}/@acme/util/-/@acme/util-1.1.0.tgz"
        self.assertEqual(self.via(cached, h.ALICE).status, 200)
        self.fake.fault("/api/v4/", "hang")
        try:
            a = self.via(cached, h.GUEST, timeout=60)
            b = self.via(uncached, h.GUEST, timeout=60)
            self.assertEqual(a.status, 504, a)
            self.assertEqual((a.status, a.body), (b.status, b.body))
        finally:
            self.fake.clear_faults()

    def test_a_429_never_extends_access(self):
        path = f"{P42}/@acme/app/-/@acme/app-1.0.0.tgz"
        self.assertEqual(self.via(path, h.REVOKED).status, 200)
        self.fake.control("POST", "tokens/revoke", {"token": h.REVOKED})
        self.fake.fault("/api/v4/", "429")
        try:
            h.wait_until(lambda: self.via(path, h.REVOKED).status != 200, 10, "the decision to expire")
            self.assertNotEqual(self.via(path, h.REVOKED).status, 200)
        finally:
            self.fake.clear_faults()


class Responses(Base):
    """Validators, cache headers and formats on what packrat answers."""

    config = f'[go]\nhost = "{h.GO_HOST}"\n'

    def test_tarballs_carry_a_strong_etag_and_answer_304(self):
        path = f"{P42}/@acme/util/-/@acme/util-1.1.0.tgz"
        self.via(path, h.ALICE)
        r = self.via(path, h.ALICE)
        etag = r.header("etag")
        self.assertEqual(etag, '"' + hashlib.sha256(r.body).hexdigest() + '"')
        again = self.via(path, h.ALICE, headers={"If-None-Match": etag})
        self.assertEqual(again.status, 304)

    def test_404s_say_how_they_were_answered(self):
        path = f"{P42}/@acme%2fnothing-here"
        first = self.via(path, h.ALICE)
        self.assertEqual(first.status, 404)
        self.assertEqual(first.header("x-packrat-cache"), "not_found")
        second = self.via(path, h.ALICE)
        self.assertEqual(second.header("x-packrat-cache"), "negative")
        self.assertNotIn('outcome="refused"', [l for l in self.packrat.logs().splitlines() if "nothing-here" in l and "status=404" in l][-1])

    def test_metrics_are_prometheus_text_unless_openmetrics_is_asked(self):
        r = h.get(f"{self.packrat.url}/-/metrics")
        self.assertTrue(r.header("content-type").startswith("text/plain; version=0.0.4"), r.headers)
        self.assertNotIn(b"# EOF", r.body)
        self.assertIn(b"# TYPE packrat_requests_total counter", r.body)
        om = h.get(f"{self.packrat.url}/-/metrics", {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})
        self.assertTrue(om.header("content-type").startswith("application/openmetrics-text"))
        self.assertTrue(om.body.endswith(b"# EOF\n"))

    def test_pipelines_link_keeps_the_path_params(self):
        path = "/api/v4/projects/42/packages/11/pipelines"
        r = self.via(path, h.ALICE)
        up = self.direct(path, h.ALICE)
        self.assertEqual(r.status, 200)
        link = r.header("link")
        self.assertIsNotNone(link)
        for param in ("id=42", "package_id=11", "per_page=20", "cursor="):
            self.assertIn(param, link)
        self.assertEqual(link.replace(self.packrat.url, ""), up.header("link").replace(self.fake.url, ""))

    def test_status_deprecated_is_accepted(self):
        r = self.via("/api/v4/projects/42/packages?status=deprecated", h.ALICE)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([p["status"] for p in r.json()], ["deprecated"])

    def test_go_probes_of_missing_versions_are_not_warnings(self):
        r = self.via("/api/v4/projects/8/packages/go/gitlab.example.com/pub/gomods/@v/v9.9.9.info")
        self.assertEqual(r.status, 404)
        self.assertEqual([l for l in self.packrat.logs().splitlines() if " WARN " in l and "v9.9.9" in l], [])

    def test_one_warning_per_failure(self):
        path = f"{P42}/@acme/ui/-/@acme/ui-2.1.0.tgz"
        self.fake.fault("ui-2.1.0.tgz", "500", count=1)
        r = self.via(path, h.ALICE)
        self.assertEqual(r.status, 502)
        warns = [l for l in self.packrat.logs().splitlines() if " WARN " in l and "ui-2.1.0" in l]
        self.assertEqual(len(warns), 1, warns)


class PackageFiles(Base):
    """``GET .../package_files/:id/download`` (GitLab 18.4), cached and verified, every type."""

    def test_every_package_type_downloads_and_caches(self):
        listing = self.direct("/api/v4/projects/42/packages?per_page=100", h.ALICE).json()
        types = set()
        for pkg in listing:
            files = self.direct(f"/api/v4/projects/42/packages/{pkg['id']}/package_files", h.ALICE).json()
            for f in files:
                path = f"/api/v4/projects/42/packages/{pkg['id']}/package_files/{f['id']}/download"
                up = self.direct(path, h.ALICE)
                first = self.via(path, h.ALICE)
                self.assertEqual(first.status, 200, f"{path}: {first}")
                self.assertEqual(first.body, up.body)
                if f.get("file_sha256"):
                    self.assertEqual(hashlib.sha256(first.body).hexdigest(), f["file_sha256"])
                second = self.via(path, h.ALICE)
                self.assertEqual(second.header("x-packrat-cache"), "hit", path)
                self.assertEqual(second.body, up.body)
                types.add(pkg["package_type"])
        self.assertLessEqual({"npm", "generic", "maven", "pypi"}, types)

    def test_a_broken_download_is_never_cached_nor_served_to_others(self):
        pkg = next(p for p in self.direct("/api/v4/projects/42/packages", h.ALICE).json() if p["package_type"] == "generic")
        files = self.direct(f"/api/v4/projects/42/packages/{pkg['id']}/package_files", h.ALICE).json()
        path = f"/api/v4/projects/42/packages/{pkg['id']}/package_files/{files[0]['id']}/download"
        self.fake.fault(f"package_files/{files[0]['id']}/download", "truncate", count=1)
        try:
            broken = self.via(path, h.ALICE)
            # An answer that arrived whole must be an error, never a short 200.
            self.assertNotEqual(broken.status, 200, broken)
        except (http.client.HTTPException, ConnectionError):
            pass  # the body was cut: the client sees the transfer fail
        good = self.via(path, h.ALICE)
        self.assertEqual(good.status, 200)
        self.assertEqual(len(good.body), files[0]["size"])
        anon = self.via(path)
        self.assertEqual((anon.status, anon.body), (self.direct(path).status, self.direct(path).body))
        self.assertEqual(self.via(path, h.BOB).status, self.direct(path, h.BOB).status)


class Messages(Base):
    """Messages that tell a user what to set."""

    config = f'[go]\nhost = "{h.GO_HOST}"\n\n[forwarding]\ngo_sumdb = "http://127.0.0.1:9"\n'

    def test_unmapped_go_module_names_both_settings(self):
        r = self.via("/go/example.org/some/mod/@v/list")
        self.assertEqual(r.status, 404)
        self.assertIn("go.host", r.json()["message"])
        self.assertIn("[[go.modules]]", r.json()["message"])

    def test_sync_says_the_same(self):
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "go.mod"), "w") as f:
            f.write("module example.com/x\n\ngo 1.19\n\nrequire example.org/some/mod v1.0.0\n")
        with open(os.path.join(d, "go.sum"), "w") as f:
            f.write("example.org/some/mod v1.0.0 h1:AAAA=\nexample.org/some/mod v1.0.0/go.mod h1:AAAA=\n")
        syncer = h.Packrat(upstream=self.fake.url, config=self.config)
        r = syncer.run("sync", os.path.join(d, "go.mod"), check=False)
        syncer.cleanup()
        self.assertEqual(r.returncode, 1)
        self.assertIn("go.host", r.stdout)
        self.assertIn("[[go.modules]]", r.stdout)

    def test_private_sumdb_lookup_names_gonosumdb(self):
        r = self.via("/go/sumdb/127.0.0.1/lookup/gitlab.example.com/acme/gomods@v1.0.0")
        self.assertEqual(r.status, 404, r)
        self.assertIn("GONOSUMDB", r.json()["message"])

    def test_sumdb_outage_names_the_setting(self):
        r = self.via("/go/sumdb/127.0.0.1/lookup/example.org/public@v1.0.0")
        self.assertEqual(r.status, 502, r)
        self.assertIn("forwarding.go_sumdb", r.json()["message"])


class SyncSummary(unittest.TestCase):
    """The sync summary adds up; its byte count is bytes fetched now."""

    def test_summary_adds_up(self):
        fake = h.Fake()
        syncer = h.Packrat(upstream=fake.url)
        d = tempfile.mkdtemp()
        listing = os.path.join(d, "packrat.list")
        with open(listing, "w") as f:
            f.write("npm @acme/util@1.0.0 project=42\nnpm @acme/util@1.1.0 project=42\nnpm @acme/nope@1.0.0 project=42\n")
        try:
            env = {"PACKRAT_UPSTREAM_TOKEN": h.ALICE}
            first = syncer.run("sync", listing, env=env, check=False)
            self.assertEqual(first.returncode, 1)
            self.assertIn("3 items: 2 fetched, 0 already present, 1 failed", first.stdout)
            sizes = sum(len(self.tarball(fake, v)) for v in ("1.0.0", "1.1.0"))
            self.assertIn(f", {sizes} bytes fetched;", first.stdout)
            second = syncer.run("sync", listing, env=env, check=False)
            self.assertIn("3 items: 0 fetched, 2 already present, 1 failed", second.stdout)
            self.assertIn(", 0 bytes fetched;", second.stdout)
        finally:
            syncer.cleanup()
            fake.stop()

    @staticmethod
    def tarball(fake, version):
        return h.get(f"{fake.url}{P42}/@acme/util/-/@acme/util-{version}.tgz", h.token_headers(h.ALICE)).body


class OfflineMirror(unittest.TestCase):
    """Offline misses are plain misses: not dependency-confusion blocks; 404s name the mirror."""

    def test_offline_misses(self):
        fake = h.Fake()
        syncer = h.Packrat(upstream=fake.url)
        d = tempfile.mkdtemp()
        listing = os.path.join(d, "packrat.list")
        with open(listing, "w") as f:
            f.write("npm @acme/util@1.1.0 project=42\n")
        syncer.run("sync", listing, env={"PACKRAT_UPSTREAM_TOKEN": h.ALICE})
        bundle = os.path.join(d, "b.tar")
        syncer.run("export", "--out", bundle)
        fake.stop()
        mirror = h.Packrat(config="[cache]\noffline = true\n")
        mirror.run("import", bundle)
        mirror.start()
        try:
            # Pinned (synced from GitLab), asked where the mirror does not hold it.
            r = h.get(f"{mirror.url}/api/v4/projects/43/packages/npm/@acme%2futil")
            self.assertEqual(r.status, 404)
            self.assertIn("offline mirror", r.json()["message"])
            self.assertNotIn("127.0.0.1:9", r.json()["message"])
            r = h.get(f"{mirror.url}/api/v4/projects/42/packages/npm/@acme/util/-/@acme/util-9.9.9.tgz")
            self.assertEqual(r.status, 404)
            self.assertEqual(mirror.metric("packrat_dependency_confusion_blocked"), 0)
            self.assertNotIn("dependency confusion", mirror.logs())
        finally:
            mirror.cleanup()
            syncer.cleanup()


if __name__ == "__main__":
    unittest.main()
