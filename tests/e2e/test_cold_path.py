"""The cold path (issue 13): at a project prefix a tarball and its packument are fetched at
once, and the gate and the checksums still hold before the client has the last byte.

Everything runs through ``target/release/packrat`` and the independent fake GitLab. The fake
can hold one request (``hang``) until told otherwise: a packrat that fetched the two one after
the other would never ask for the tarball while the packument hangs.
"""

import hashlib
import http.client
import threading
import unittest

import harness as h

P42 = "/api/v4/projects/42/packages/npm"


class AtOnce(unittest.TestCase):
    def setUp(self):
        self.fake = h.Fake()
        self.packrat = h.Packrat(upstream=self.fake.url).start()

    def tearDown(self):
        self.packrat.cleanup()
        self.fake.stop()

    def via(self, path, token=None, **kw):
        return h.request("GET", self.packrat.url + path, h.token_headers(token), **kw)

    def direct(self, path, token=None):
        return h.request("GET", self.fake.url + path, h.token_headers(token))

    def tarball(self, name, version):
        """(path at packrat, the packument's shasum, GitLab's bytes)."""
        doc = self.direct(f"{P42}/{name.replace('/', '%2f')}", h.ALICE).json()
        dist = doc["versions"][version]["dist"]
        suffix = dist["tarball"].split("/packages/npm/", 1)[1]
        body = self.direct(f"{P42}/{suffix}", h.ALICE).body
        return f"{P42}/{suffix}", dist["shasum"], body

    def in_background(self, path, token):
        out = {}

        def run():
            try:
                out["r"] = self.via(path, token)
            except Exception as e:  # noqa: BLE001 - reported by the test
                out["e"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, out

    def test_tarball_is_requested_while_the_packument_is_outstanding(self):
        path, shasum, body = self.tarball("@acme/util", "1.0.0")
        self.fake.reset_requests()
        self.fake.fault("npm/@acme%2", "hang")
        t, out = self.in_background(path, h.ALICE)
        h.wait_until(lambda: self.fake.count("/-/@acme/util-1.0.0.tgz") >= 1, what="the tarball request")
        self.assertIsNone(out.get("r"), "answered before the packument (the gate) was in")
        self.fake.clear_faults()
        t.join(30)
        r = out.get("r")
        self.assertIsNotNone(r, out.get("e"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body)
        self.assertEqual(hashlib.sha1(r.body).hexdigest(), shasum)
        self.assertEqual(r.header("x-packrat-cache"), "miss")
        again = self.via(path, h.ALICE)
        self.assertEqual((again.status, again.header("x-packrat-cache")), (200, "hit"))
        self.assertEqual(again.body, body)
        self.assertEqual(self.fake.count("/-/@acme/util-1.0.0.tgz"), 1)

    def test_a_caller_gitlab_refuses_gets_its_refusal_and_caches_nothing(self):
        path, _, body = self.tarball("@acme/util", "1.0.0")
        for token in (h.BOB, None, "expired-pat"):
            got, up = self.via(path, token), self.direct(path, token)
            self.assertEqual(got.status, up.status, f"{token}: {got} vs {up}")
            self.assertNotEqual(got.status, 200)
        first = self.via(path, h.ALICE)
        self.assertEqual((first.status, first.header("x-packrat-cache")), (200, "miss"))
        self.assertEqual(first.body, body)

    def test_bytes_that_do_not_match_the_packument_are_neither_served_whole_nor_cached(self):
        path, shasum, body = self.tarball("@acme/ui", "2.0.0")
        self.fake.override(path, 200, {"Content-Type": "application/octet-stream"}, "not the tarball", count=1)
        try:
            bad = self.via(path, h.ALICE)
            self.assertNotEqual((bad.status, bad.body), (200, b"not the tarball"))
        except (http.client.HTTPException, ConnectionError):
            pass  # the body was cut before its last byte
        good = self.via(path, h.ALICE)
        self.assertEqual((good.status, good.header("x-packrat-cache")), (200, "miss"))
        self.assertEqual(hashlib.sha1(good.body).hexdigest(), shasum)
        self.assertEqual(good.body, body)

    def test_a_file_the_packument_does_not_list_is_not_served(self):
        # GitLab would serve the file (it still has it); the packument packrat may read has
        # dropped the version, so the gate refuses it.
        path, _, _ = self.tarball("@acme/util", "1.0.0")
        self.fake.override(f"{P42}/@acme/util", 200, {"Content-Type": "application/json"},
                           '{"name":"@acme/util","versions":{},"dist-tags":{}}', count=0)
        try:
            r = self.via(path, h.ALICE)
            self.assertEqual(r.status, 404, r)
            self.assertEqual(self.via(path, h.ALICE).status, 404)
        finally:
            self.fake.clear_overrides()


if __name__ == "__main__":
    unittest.main()
