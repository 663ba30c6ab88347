"""Self-test of the fake GitLab (fake_gitlab.py), with no packrat involved.

    python3 -m unittest tests/e2e/fake_selftest.py -v

Starts the fake as a subprocess and checks it over HTTP (http.client, no redirects followed),
then with the real clients where present: ``npm install`` of a private scoped package at the
project prefix with a token, and ``go mod download`` of public modules through the project's
Go proxy. A missing client skips its test (with the reason), unless ``CI`` is set: then it fails.
"""

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest
import urllib.parse
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fake_gitlab as fg  # noqa: E402  (constants only; the server runs as its own process)

GO_HOST = fg.DEFAULT_GO_HOST
PUBLIC = "https://registry.npmjs.example"


class Res:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def h(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def http_req(method, url, headers=None, body=None, timeout=15):
    """One request on a fresh connection; redirects are not followed."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    if isinstance(body, (dict, list)) or (body is not None and not isinstance(body, (bytes, str))):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    if isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        hdrs = {}
        for k, v in r.getheaders():
            hdrs[k.lower()] = v
        return Res(r.status, hdrs, data)
    finally:
        conn.close()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def require_tool(name, path=None):
    found = path if path and os.path.exists(path) else shutil.which(name)
    if found:
        return found
    reason = f"{name} is not installed"
    if os.environ.get("CI"):
        raise AssertionError(f"required under CI: {reason}")
    print(f"\nskipping: {reason}", file=sys.stderr)
    raise unittest.SkipTest(reason)


class FakeProcess:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fake_gitlab.py"), "--port", "0", "--go-host", GO_HOST,
             "--public-registry", PUBLIC, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("fake-gitlab listening on http://127.0.0.1:"), line
        self.url = line.strip().rsplit(" ", 1)[1]
        self.api = self.url + "/api/v4"

    def ctl(self, method, path, body=None, base=None):
        r = http_req(method, f"{base or self.url}/__fake/{path}", body=body if body is not None else None)
        assert r.status < 400, (path, r)
        return r.json() if r.body else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def tgz_files(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}


def publish_body(name, version, tag="latest", deps=None, data=b"tarball bytes"):
    return {
        "_id": name, "name": name, "description": "x", "dist-tags": {tag: version},
        "versions": {version: {"name": name, "version": version, "dependencies": deps or {},
                               "readme": "dropped", "dist": {"shasum": hashlib.sha1(data).hexdigest(),
                                                             "integrity": "sha512-xyz"}}},
        "_attachments": {f"{name}-{version}.tgz": {"content_type": "application/octet-stream",
                                                   "data": base64.b64encode(data).decode(), "length": len(data)}},
    }


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fake = FakeProcess()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def setUp(self):
        self.fake.ctl("POST", "reset")

    def get(self, path, headers=None, **kw):
        return http_req("GET", self.fake.api + path, headers=headers, **kw)

    def req(self, method, path, headers=None, body=None):
        return http_req(method, self.fake.api + path, headers=headers, body=body)

    def assertBody(self, res, status, body):
        self.assertEqual(res.status, status, res)
        self.assertEqual(res.json(), body)


A = {"PRIVATE-TOKEN": fg.ALICE_PAT}
M = {"PRIVATE-TOKEN": fg.MAINT_PAT}
P42 = "/projects/42/packages/npm"


class World(Base):
    def test_world_endpoint_and_constants(self):
        w = self.fake.ctl("GET", "world")
        self.assertEqual(w["tokens"]["ALICE_PAT"], fg.ALICE_PAT)
        self.assertEqual(w["external_url"], self.fake.url)
        self.assertEqual(w["go_host"], GO_HOST)
        self.assertTrue(w["objstore_url"].startswith("http://127.0.0.1:"))
        self.assertEqual({p["id"]: p["path_with_namespace"] for p in w["projects"]},
                         {42: "acme/web", 43: "acme/sub/tools", 7: "pub/lib", 44: "acme/gomods", 8: "pub/gomods"})
        self.assertEqual({g["id"] for g in w["groups"]}, {10, 11, 20})
        mods = {m["module"]: m["versions"] for m in w["go"]}
        self.assertEqual(mods[f"{GO_HOST}/pub/gomods/Caps"], ["v1.0.0"])

    def test_deterministic_tarballs(self):
        other = FakeProcess()
        try:
            a = self.fake.ctl("GET", "world")["npm"]
            b = other.ctl("GET", "world")["npm"]
            self.assertEqual([(p["name"], p["version"], p["shasum"]) for p in a],
                             [(p["name"], p["version"], p["shasum"]) for p in b])
        finally:
            other.stop()


class NpmMetadata(Base):
    def test_document_shape_and_tarball_hash(self):
        r = self.get(f"{P42}/@acme%2fapp", A)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.h("content-type"), "application/json")
        doc = r.json()
        self.assertEqual(list(doc), ["name", "versions", "dist-tags"])
        v = doc["versions"]["1.0.0"]
        self.assertEqual(set(v), {"name", "version", "dist", "dependencies"})
        self.assertEqual(v["dependencies"], {"@acme/util": "^1.0.0"})
        self.assertEqual(set(v["dist"]), {"shasum", "tarball"})
        self.assertEqual(v["dist"]["tarball"],
                         f"{self.fake.url}/api/v4/projects/42/packages/npm/@acme/app/-/@acme/app-1.0.0.tgz")
        tgz = http_req("GET", v["dist"]["tarball"], A)
        self.assertEqual(tgz.status, 200)
        self.assertEqual(hashlib.sha1(tgz.body).hexdigest(), v["dist"]["shasum"])
        files = tgz_files(tgz.body)
        self.assertEqual(json.loads(files["package/package.json"])["dependencies"], {"@acme/util": "^1.0.0"})
        self.assertEqual(files["package/index.js"], b'module.exports = "@acme/app@1.0.0";\n')
        self.assertEqual(gzip.decompress(tgz.body)[:0], b"")
        self.assertEqual(tgz.body[4:8], b"\0\0\0\0")  # gzip mtime 0

        util = self.get(f"{P42}/@acme/util", A).json()  # raw slash works too
        self.assertEqual(util["dist-tags"], {"latest": "1.1.0"})
        self.assertNotIn("dependencies", util["versions"]["1.0.0"])
        ui = self.get(f"{P42}/@acme%2Fui", A).json()
        self.assertEqual(ui["dist-tags"], {"latest": "2.0.0", "beta": "2.1.0"})
        old = self.get(f"{P42}/@acme%2fold", A).json()
        self.assertEqual(old["versions"]["1.0.0"]["deprecated"], "use @acme/util instead")
        self.assertEqual(self.get(f"{P42}/@acme%2fhidden", A).status, 200)  # hidden is installable
        self.assertEqual(self.get(f"{P42}/@acme%2fgone", A).status, 404)
        self.assertEqual(self.get("/projects/acme%2FWEB/packages/npm/@acme%2futil", A).status, 200)

    def test_auth_matrix(self):
        url = f"{P42}/@acme%2futil"
        cases = [
            ({}, 401, {"message": "401 Unauthorized"}),
            ({"PRIVATE-TOKEN": fg.BOB_PAT}, 404, {"message": "404 Project Not Found", "error": "Project not found"}),
            ({"private-token": fg.GUEST_PAT}, 200, None),
            ({"Authorization": f"Bearer {fg.ALICE_PAT}"}, 200, None),
            ({"Authorization": f"Bearer {fg.OAUTH_ALICE}"}, 200, None),
            ({"PRIVATE-TOKEN": fg.OAUTH_ALICE}, 401, {"message": "401 Unauthorized"}),
            ({"Job-Token": fg.JOB_RUNNING}, 200, None),
            ({"Authorization": f"Bearer {fg.JOB_RUNNING}"}, 200, None),
            ({"Job-Token": fg.JOB_FINISHED}, 401, {"message": "401 Unauthorized"}),
            ({"Deploy-Token": fg.DEPLOY_READ}, 200, None),
            ({"Authorization": f"Bearer {fg.DEPLOY_READ}"}, 200, None),
            ({"Authorization": basic("x", fg.DEPLOY_READ)}, 200, None),
            ({"Authorization": basic("alice", fg.ALICE_PAT)}, 401, {"message": "401 Unauthorized"}),  # ignored
            ({"PRIVATE-TOKEN": "nope"}, 401, {"message": "401 Unauthorized"}),
            ({"Deploy-Token": "nope"}, 401, {"message": "401 Unauthorized"}),
        ]
        for headers, status, body in cases:
            with self.subTest(headers=headers):
                r = self.get(url, headers)
                self.assertEqual(r.status, status, r)
                if body is not None:
                    self.assertEqual(r.json(), body)
        self.assertEqual(self.get(url + f"?private_token={fg.ALICE_PAT}").status, 200)
        self.assertEqual(self.get(url + f"?job_token={fg.JOB_RUNNING}").status, 200)
        r = self.get(url, {"PRIVATE-TOKEN": fg.EXPIRED_PAT})
        self.assertBody(r, 401, {"error": "invalid_token", "error_description":
                                 "Token is expired. You can either do re-authorization or token refresh."})
        self.assertTrue(r.h("www-authenticate").startswith('Bearer realm="The API", error="invalid_token"'))
        # public project: anonymous reads
        self.assertEqual(self.get("/projects/7/packages/npm/@pub%2fright").status, 200)

    def test_missing_forwarding_and_invalid_names(self):
        self.assertBody(self.get(f"{P42}/@acme%2fnope", A), 404,
                        {"message": "404 Packages Not Found", "error": "Packages not found"})
        self.assertBody(self.get("/projects/7/packages/npm/left-pad"), 404,
                        {"message": "404 Packages Not Found", "error": "Packages not found"})
        self.assertEqual(self.get(f"{P42}/@acme%2fnope").status, 401)
        self.assertBody(self.get(f"{P42}/%0d%0ahttp:/%2fexample.com", A), 400,
                        {"error": "package_name should be a valid file path"})
        self.assertEqual(self.get(f"{P42}/..", A).status, 400)
        self.fake.ctl("POST", "settings", {"npm_forwarding": True})
        r = self.get(f"{P42}/@acme%2fnope")  # existence-based, before auth
        self.assertEqual(r.status, 302)
        self.assertEqual(r.h("location"), f"{PUBLIC}/@acme/nope")
        self.assertEqual(r.h("content-type"), "text/plain")
        self.assertEqual(self.get(f"{P42}/@acme%2futil").status, 401)  # exists: no forwarding
        self.assertEqual(self.get("/projects/999/packages/npm/left-pad").h("location"), f"{PUBLIC}/left-pad")
        self.assertEqual(self.get("/packages/npm/left-pad").status, 302)

    def test_group_and_instance(self):
        r = self.get("/groups/acme/-/packages/npm/@acme%2fshared", A).json()
        self.assertEqual(list(r["versions"]), ["2.0.0"])
        self.assertIn("/projects/43/", r["versions"]["2.0.0"]["dist"]["tarball"])
        r = self.get("/groups/10/-/packages/npm/@acme%2futil", A).json()
        self.assertIn("/projects/42/packages/npm/@acme/util/-/", r["versions"]["1.1.0"]["dist"]["tarball"])
        self.assertEqual(self.get("/packages/npm/@acme%2fapp", A).status, 200)
        self.assertEqual(self.get("/packages/npm/@ACME%2fapp", A).status, 404)  # names are exact
        self.assertBody(self.get("/packages/npm/@nobody%2fx", A), 404,
                        {"message": "404 Project Not Found", "error": "Project not found"})
        self.assertEqual(self.get("/packages/npm/@pub%2fleft").status, 200)
        self.assertEqual(self.get("/groups/acme/-/packages/npm/@acme%2futil").status, 401)
        self.assertBody(self.get("/groups/acme/-/packages/npm/@acme%2futil", {"PRIVATE-TOKEN": fg.BOB_PAT}), 404,
                        {"message": "404 Group Not Found", "error": "Group not found"})
        # guest is on 42 only; the newest @acme/shared is in 43
        g = {"PRIVATE-TOKEN": fg.GUEST_PAT}
        self.assertEqual(self.get("/groups/acme/-/packages/npm/@acme%2fshared", g).status, 404)
        self.fake.ctl("POST", "settings", {"multiple_projects": True})
        self.assertEqual(list(self.get("/groups/acme/-/packages/npm/@acme%2fshared", g).json()["versions"]),
                         ["1.0.0"])
        merged = self.get("/packages/npm/@acme%2fshared", A).json()
        self.assertEqual(list(merged["versions"]), ["1.0.0", "2.0.0"])
        self.assertEqual(merged["dist-tags"]["latest"], "2.0.0")
        self.assertEqual(self.get("/packages/npm/@acme%2fshared").status, 401)
        self.assertEqual(self.get("/packages/npm/@acme%2fshared", {"PRIVATE-TOKEN": fg.BOB_PAT}).status, 403)

    def test_metadata_cache_modes(self):
        self.fake.ctl("POST", "settings", {"metadata_cache": "file"})
        r = self.get(f"{P42}/@acme%2futil", A)
        self.assertEqual((r.status, r.h("content-type")), (200, "application/octet-stream"))
        self.assertEqual(r.json()["name"], "@acme/util")
        self.fake.ctl("POST", "settings", {"metadata_cache": "redirect"})
        r = self.get(f"{P42}/@acme%2futil", A)
        self.assertEqual(r.status, 302)
        self.assertEqual(http_req("GET", r.h("location")).json()["name"], "@acme/util")


class NpmTarball(Base):
    def test_download_and_errors(self):
        url = f"{P42}/@acme/util/-/@acme/util-1.0.0.tgz"
        r = self.get(url, A)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.h("content-type"), "application/octet-stream")
        self.assertEqual(r.h("content-disposition"), 'attachment; filename="util-1.0.0.tgz"')
        self.assertEqual(self.get(f"{P42}/@acme%2futil/-/@acme%2futil-1.0.0.tgz", A).body, r.body)
        self.assertBody(self.get(url), 404, {"message": "404 Project Not Found", "error": "Project not found"})
        self.assertBody(self.get(f"{P42}/@acme/util/-/@acme/util-9.9.9.tgz", A), 404,
                        {"message": "404 Package Not Found", "error": "Package not found"})
        self.assertEqual(self.get(f"{P42}/@acme/util/-/util-1.0.0.tgz", A).status, 404)
        self.assertEqual(self.get("/groups/acme/-/packages/npm/@acme/util/-/@acme/util-1.0.0.tgz", A).status, 404)
        self.assertBody(self.req("DELETE", url, A), 404, {"error": "404 Not Found"})

    def test_object_storage_redirect(self):
        self.fake.ctl("POST", "settings", {"tarball_redirect": True})
        direct = self.fake.ctl("GET", "world")["npm"][1]
        r = self.get(f"{P42}/@acme/util/-/@acme/util-1.1.0.tgz", A)
        self.assertEqual(r.status, 302)
        loc = r.h("location")
        self.assertTrue(loc.startswith(self.fake.ctl("GET", "world")["objstore_url"] + "/objects/"), loc)
        self.assertIn("X-Amz-Signature=", loc)
        blob = http_req("GET", loc)
        self.assertEqual(blob.status, 200)
        self.assertEqual(hashlib.sha1(blob.body).hexdigest(), direct["shasum"])
        self.assertEqual(self.fake.ctl("GET", "objstore_seen_credentials"), [])
        self.assertEqual(http_req("GET", loc.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status, 403)
        http_req("GET", loc, {"Authorization": "Bearer leaked", "Job-Token": "j"})
        seen = self.fake.ctl("GET", "objstore_seen_credentials")
        self.assertEqual({(s["header"], s["value"]) for s in seen}, {("authorization", "Bearer leaked"),
                                                                      ("job-token", "j")})


class NpmWrites(Base):
    def test_publish(self):
        body = publish_body("@acme/new", "1.0.0")
        url = f"{P42}/@acme%2fnew"
        self.assertBody(self.req("PUT", url, {}, body), 401, {"message": "401 Unauthorized"})
        self.assertBody(self.req("PUT", url, {"PRIVATE-TOKEN": fg.GUEST_PAT}, body), 403,
                        {"message": "403 Forbidden"})
        self.assertEqual(self.req("PUT", url, {"PRIVATE-TOKEN": fg.BOB_PAT}, body).status, 404)
        self.assertEqual(self.req("PUT", url, {"Deploy-Token": fg.DEPLOY_READ}, body).status, 403)
        self.assertBody(self.req("PUT", url, A, b"{nope"), 400, {"message": "Invalid json", "error": "Invalid json"})
        self.assertBody(self.req("PUT", url, A, {"name": "@acme/new"}), 400,
                        {"message": "Versions key is missing from the JSON upload",
                         "error": "Versions key is missing from the JSON upload"})
        r = self.req("PUT", url, A, body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["name"], "@acme/new")
        doc = self.get(url, A).json()
        self.assertEqual(doc["versions"]["1.0.0"]["dist"]["shasum"], hashlib.sha1(b"tarball bytes").hexdigest())
        self.assertEqual(self.get(f"{P42}/@acme/new/-/@acme/new-1.0.0.tgz", A).body, b"tarball bytes")
        self.assertBody(self.req("PUT", url, A, body), 403,
                        {"message": "Package already exists.", "error": "Package already exists."})
        self.assertEqual(self.req("PUT", url, {"Deploy-Token": fg.DEPLOY_WRITE},
                                  publish_body("@acme/new", "1.0.1", tag="next")).status, 200)
        self.assertEqual(self.req("PUT", url, {"Job-Token": fg.JOB_RUNNING},
                                  publish_body("@acme/new", "1.0.2", tag="latest")).status, 200)
        tags = self.get(f"{P42}/-/package/@acme%2fnew/dist-tags", A).json()
        self.assertEqual(tags, {"latest": "1.0.2", "next": "1.0.1"})
        # the body's name wins over the URL's
        self.assertEqual(self.req("PUT", f"{P42}/@acme%2fwhatever", A, publish_body("@acme/real", "1.0.0")).status,
                         200)
        self.assertEqual(self.get(f"{P42}/@acme%2freal", A).status, 200)
        # naming convention: the version must be unique in the root namespace
        self.assertBody(self.req("PUT", "/projects/43/packages/npm/@acme%2futil", A,
                                 publish_body("@acme/util", "1.0.0")), 400,
                        {"message": "Validation failed: Package already exists",
                         "error": "Validation failed: Package already exists"})
        bad = publish_body("@acme/x", "1.0.0")
        bad["_attachments"] = {"wrong.tgz": {"data": "AAAA"}}
        self.assertBody(self.req("PUT", f"{P42}/@acme%2fx", A, bad), 400,
                        {"message": "Attachment data is empty.", "error": "Attachment data is empty."})
        self.assertBody(self.req("PUT", "/groups/acme/-/packages/npm/@acme%2fx", A, bad), 404,
                        {"error": "404 Not Found"})
        self.assertEqual(self.req("PUT", f"{P42}/@acme%2fnew/-rev/1-abc", A, body).status, 404)

    def test_deprecate(self):
        body = {"name": "@acme/util", "versions": {"1.0.0": {"name": "@acme/util", "version": "1.0.0",
                                                             "deprecated": "gone soon"}}}
        hdr = {"Npm-Command": "deprecate"}
        self.assertEqual(self.req("PUT", f"{P42}/@acme%2futil", {**A, **hdr}, body).status, 403)
        self.assertEqual(self.req("PUT", f"{P42}/@acme%2futil", {**M, **hdr}, body).status, 200)
        doc = self.get(f"{P42}/@acme%2futil", A).json()
        self.assertEqual(doc["versions"]["1.0.0"]["deprecated"], "gone soon")
        self.assertNotIn("deprecated", doc["versions"]["1.1.0"])
        body["versions"]["1.0.0"]["deprecated"] = ""
        self.req("PUT", f"{P42}/@acme%2futil", {**M, **hdr}, body)
        self.assertNotIn("deprecated", self.get(f"{P42}/@acme%2futil", A).json()["versions"]["1.0.0"])
        r = self.req("PUT", f"{P42}/@acme%2futil", {**M, **hdr}, {"versions": {"1.0.0": {}}})
        self.assertEqual(r.status, 400)

    def test_dist_tags(self):
        base = f"{P42}/-/package/@acme%2fui/dist-tags"
        self.assertEqual(self.get(base).status, 401)
        self.assertEqual(self.get(base, A).json(), {"latest": "2.0.0", "beta": "2.1.0"})
        self.assertEqual(self.req("PUT", base + "/latest", {}, '"2.1.0"').status, 401)
        self.assertEqual(self.req("PUT", base + "/latest", {"PRIVATE-TOKEN": fg.GUEST_PAT}, '"2.1.0"').status, 403)
        r = self.req("PUT", base + "/latest", {**A, "Content-Type": "application/json"}, '"2.1.0"')
        self.assertEqual((r.status, r.body), (204, b""))
        self.assertEqual(self.get(base, A).json()["latest"], "2.1.0")
        self.assertEqual(self.req("PUT", base + "/x", A, '"9.9.9"').status, 404)
        self.assertEqual(self.req("DELETE", base + "/beta", A).status, 403)
        self.assertEqual(self.req("DELETE", base + "/beta", M).status, 204)
        self.assertBody(self.req("DELETE", base + "/beta", M), 404,
                        {"message": "404 Package Tag Not Found", "error": "Package tag not found"})
        self.assertEqual(self.get("/groups/acme/-/packages/npm/-/package/@acme%2fui/dist-tags", A).json(),
                         {"latest": "2.1.0"})
        self.assertEqual(self.get("/packages/npm/-/package/@acme%2fui/dist-tags", A).status, 200)
        self.assertBody(self.get(f"{P42}/-/package/@acme%2fnope/dist-tags", A), 404,
                        {"message": "404 Package Not Found", "error": "Package not found"})

    def test_audit(self):
        path = "/-/npm/v1/security/advisories/bulk"
        self.assertEqual(self.req("POST", P42 + path, {}, {}).status, 401)
        self.assertBody(self.req("POST", P42 + path, A, {"@acme/util": ["1.0.0"]}), 200, [])
        self.assertBody(self.req("POST", "/groups/acme/-/packages/npm" + path, A, {}), 404,
                        {"message": "404 Project Not Found", "error": "Project not found"})
        self.assertEqual(self.req("POST", "/packages/npm/-/npm/v1/security/audits/quick", A, {}).status, 404)
        self.fake.ctl("POST", "settings", {"npm_forwarding": True})
        r = self.req("POST", P42 + path, A, {"a": ["1"]})
        self.assertEqual(r.status, 307)
        self.assertEqual(r.h("location"), f"{PUBLIC}/-/npm/v1/security/advisories/bulk")


class GoProxy(Base):
    G8 = f"/projects/8/packages/go/{GO_HOST}/pub/gomods"
    G44 = f"/projects/44/packages/go/{GO_HOST}/acme/gomods"

    def test_public_module(self):
        r = self.get(self.G8 + "/@v/list")
        self.assertEqual((r.status, r.h("content-type"), r.body), (200, "text/plain", b"v1.0.0\nv1.2.0"))
        self.assertBody(self.get(self.G44 + "/@v/v1.0.0.info", A), 200,
                        {"Version": "v1.0.0", "Time": "2024-01-02T03:04:05.000+00:00"})
        info = self.get(self.G8 + "/@v/v1.0.0.info")
        self.assertEqual(set(info.json()), {"Version", "Time"})
        self.assertNotEqual(self.get(self.G8 + "/@v/v1.2.0.info").json()["Time"], info.json()["Time"])
        self.assertEqual(self.get(self.G8 + "/@v/v1.2.0.mod").body, f"module {GO_HOST}/pub/gomods\n\ngo 1.19\n".encode())
        z = self.get(self.G8 + "/@v/v1.2.0.zip")
        self.assertEqual(z.h("content-type"), "application/zip")
        self.assertEqual(z.h("content-disposition"), 'attachment; filename="v1.2.0.zip"')
        self.assertEqual(z.body, self.get(self.G8 + "/@v/v1.2.0.zip").body)
        with zipfile.ZipFile(io.BytesIO(z.body)) as zf:
            names = sorted(zf.namelist())
            self.assertEqual(names, [f"{GO_HOST}/pub/gomods@v1.2.0/{n}" for n in ("LICENSE", "go.mod", "hello.go")])
            self.assertTrue(all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist()))
            self.assertIn(b'return "v1.2.0"', zf.read(f"{GO_HOST}/pub/gomods@v1.2.0/hello.go"))
        caps = self.get(self.G8 + "/!caps/@v/v1.0.0.zip")
        with zipfile.ZipFile(io.BytesIO(caps.body)) as zf:
            self.assertIn(f"{GO_HOST}/pub/gomods/Caps@v1.0.0/go.mod", zf.namelist())
        self.assertBody(self.get(self.G8 + "/Caps/@v/list"), 404, {"message": "404 Not Found"})
        self.assertBody(self.get(self.G8 + "/@latest"), 404, {"error": "404 Not Found"})
        self.assertBody(self.get(self.G8 + "/@v/v9.9.9.info"), 404, {"message": "404 Not Found"})
        self.assertEqual(self.get(self.G8 + "/@v/V1.0.0.info").status, 404)
        self.assertBody(self.get(f"/projects/8/packages/go/{GO_HOST}/pub/other/@v/list"), 404,
                        {"message": "404 Not Found"})
        self.assertBody(self.get("/projects/8/packages/go//@v/list"), 400,
                        {"message": '400 Bad request - "Module Name" not given'})
        self.assertEqual(self.get("/projects/pub%2Fgomods/packages/go/" + self.G8.split("/go/", 1)[1] +
                                  "/@v/list").status, 200)

    def test_private_module_auth(self):
        self.assertBody(self.get(self.G44 + "/@v/list"), 401, {"message": "401 Unauthorized"})
        for headers in ({"Authorization": basic("anyone", fg.ALICE_PAT)}, A, {"Authorization": f"Bearer {fg.ALICE_PAT}"},
                        {"Authorization": f"Bearer {fg.OAUTH_ALICE}"}):
            with self.subTest(headers=headers):
                self.assertEqual(self.get(self.G44 + "/@v/list", headers).body, b"v1.0.0\nv1.1.0")
        self.assertEqual(self.get(self.G44 + "/@v/list", {"Job-Token": fg.JOB_RUNNING}).status, 404)  # 44 != 42
        self.assertEqual(self.get(self.G44 + "/@v/list", {"Deploy-Token": fg.DEPLOY_READ}).status, 401)
        self.assertEqual(self.get(self.G44 + "/@v/list", {"Authorization": basic("x", "wrong")}).status, 401)
        self.assertBody(self.get(self.G44 + "/@v/list", {"PRIVATE-TOKEN": fg.BOB_PAT}), 404,
                        {"message": "404 Project Not Found"})
        self.assertEqual(self.get("/projects/999/packages/go/x/@v/list", A).status, 404)
        self.assertEqual(self.get("/projects/999/packages/go/x/@v/list").status, 401)
        self.assertEqual(self.get(self.G44 + "/sub/@v/list", A).body, b"v0.1.0")
        self.assertEqual(self.get(self.G44 + "/@v/v1.1.0.mod", A).status, 200)

    def test_pseudo_version_and_add(self):
        w = self.fake.ctl("POST", "go/add", {"project_id": 8, "module": f"{GO_HOST}/pub/gomods", "version": "v1.3.0"})
        self.assertEqual(w["version"], "v1.3.0")
        self.assertEqual(self.get(self.G8 + "/@v/list").body, b"v1.0.0\nv1.2.0\nv1.3.0")
        self.assertEqual(self.get(self.G8 + "/@v/v1.3.0-0.20240102030405-abcdefabcdef.info").status, 404)
        # a pseudo-version naming a real commit (12-char sha prefix + its commit time) resolves
        import fake_gitlab as local
        world = local.World("http://x", GO_HOST)
        gv = world.go[8][""]["v1.2.0"]
        pseudo = f"v1.2.1-0.{gv.time.strftime('%Y%m%d%H%M%S')}-{gv.commit[:12]}"
        self.assertBody(self.get(self.G8 + f"/@v/{pseudo}.info"), 200,
                        {"Version": pseudo, "Time": local.go_time(gv.time)})


class PackagesApi(Base):
    def test_project_list_headers(self):
        r = self.get("/projects/42/packages?per_page=4&page=2", M)
        self.assertEqual(r.status, 200)
        self.assertEqual((r.h("x-total"), r.h("x-total-pages"), r.h("x-per-page"), r.h("x-page"),
                          r.h("x-next-page"), r.h("x-prev-page")), ("11", "3", "4", "2", "3", "1"))
        links = [part.split("; ")[1] for part in r.h("link").split(", ")]
        self.assertEqual(links, ['rel="prev"', 'rel="next"', 'rel="first"', 'rel="last"'])
        first = r.h("link").split(", ")[0]
        self.assertEqual(first, f"<{self.fake.url}/api/v4/projects/42/packages?id=42&order_by=created_at&page=1"
                                f"&per_page=4&sort=asc>; rel=\"prev\"")
        items = r.json()
        self.assertEqual(len(items), 4)
        self.assertIn("delete_api_path", items[0]["_links"])
        self.assertNotIn("project_id", items[0])
        last = self.get("/projects/42/packages?per_page=4&page=3", A)
        self.assertEqual((last.h("x-next-page"), last.h("x-prev-page")), ("", "2"))
        self.assertNotIn("delete_api_path", last.json()[0]["_links"])
        one = self.get("/projects/42/packages", A)
        self.assertEqual((one.h("x-total-pages"), one.h("x-prev-page"), one.h("x-next-page")), ("1", "", ""))
        self.assertEqual(self.get("/projects/42/packages?per_page=1000", A).h("x-per-page"), "100")
        self.assertEqual(self.get("/projects/acme%2Fweb/packages?per_page=2", A).h("link").count("id=acme%2Fweb"), 3)

    def test_project_list_filters(self):
        def names(query, headers=A):
            r = self.get("/projects/42/packages" + query, headers)
            self.assertEqual(r.status, 200, r)
            return [(p["name"], p["version"]) for p in r.json()]

        self.assertNotIn(("vpc/aws", "1.0.0"), names(""))
        self.assertEqual(names("?package_type=terraform_module"), [("vpc/aws", "1.0.0")])
        self.assertEqual(names("?package_name=ACME%2FU&order_by=version&sort=desc"),
                         [("@acme/ui", "2.1.0"), ("@acme/ui", "2.0.0"), ("@acme/util", "1.1.0"),
                          ("@acme/util", "1.0.0")])
        self.assertEqual(names("?package_name=acme/u&order_by=name&sort=asc"),
                         [("@acme/ui", "2.0.0"), ("@acme/ui", "2.1.0"), ("@acme/util", "1.0.0"),
                          ("@acme/util", "1.1.0")])
        self.assertEqual(names("?package_version=1.1.0"), [("@acme/util", "1.1.0")])
        self.assertIn(("com/acme/lib", None), names("?include_versionless=true&package_type=maven"))
        self.assertNotIn(("com/acme/lib", None), names("?include_versionless=false&package_type=maven"))
        self.assertEqual(names("?status=hidden"), [("@acme/hidden", "1.0.0")])
        self.assertEqual(names("?status=pending_destruction"), [("@acme/gone", "1.0.0")])
        self.assertIn(("@acme/broken", "0.0.1"), names(""))
        for query, err in [("?order_by=size", "order_by does not have a valid value"),
                           ("?sort=up", "sort does not have a valid value"),
                           ("?package_type=cargo", "package_type does not have a valid value"),
                           ("?status=gone", "status does not have a valid value"),
                           ("?per_page=0", "per_page does not have a valid value"),
                           ("?page=x", "page is invalid"),
                           ("?include_versionless=maybe", "include_versionless is invalid"),
                           ("?order_by=project_path", "order_by does not have a valid value")]:
            with self.subTest(query=query):
                self.assertBody(self.get("/projects/42/packages" + query, A), 400, {"error": err})

    def test_project_list_auth(self):
        nf = {"message": "404 Project Not Found", "error": "Project not found"}
        self.assertBody(self.get("/projects/42/packages"), 404, nf)
        self.assertBody(self.get("/projects/42/packages", {"PRIVATE-TOKEN": fg.BOB_PAT}), 404, nf)
        self.assertEqual(self.get("/projects/42/packages", {"PRIVATE-TOKEN": fg.GUEST_PAT}).status, 200)
        self.assertEqual(self.get("/projects/42/packages", {"Job-Token": fg.JOB_RUNNING}).status, 200)
        self.assertEqual(self.get("/projects/42/packages", {"Deploy-Token": fg.DEPLOY_READ}).status, 404)
        self.assertEqual(self.get("/projects/42/packages", {"Authorization": f"Bearer {fg.DEPLOY_READ}"}).status,
                         401)
        self.assertEqual(self.get("/projects/7/packages").status, 200)

    def test_group_list(self):
        self.assertBody(self.get("/groups/acme/packages"), 404, {"message": "404 Group Not Found"})
        self.assertBody(self.get("/groups/10/packages", {"PRIVATE-TOKEN": fg.BOB_PAT}), 404,
                        {"message": "404 Group Not Found"})
        self.assertEqual(self.get("/groups/10/packages", {"Job-Token": fg.JOB_RUNNING}).status, 404)  # ignored
        r = self.get("/groups/10/packages?per_page=100&order_by=project_path&sort=desc", A)
        items = r.json()
        self.assertEqual([items[0]["project_path"], items[-1]["project_path"]], ["acme/web", "acme/gomods"])
        self.assertEqual({i["project_id"] for i in items}, {42, 43, 44})
        self.assertIn("exclude_subgroups=false", r.h("link"))
        sub = self.get("/groups/10/packages?exclude_subgroups=true&per_page=100", A).json()
        self.assertNotIn(43, {i["project_id"] for i in sub})
        guest = self.get("/groups/10/packages?per_page=100", {"PRIVATE-TOKEN": fg.GUEST_PAT}).json()
        self.assertEqual({i["project_id"] for i in guest}, {42})
        pub = self.get("/groups/pub/packages?per_page=100").json()
        self.assertEqual({i["project_id"] for i in pub}, {7, 8})

    def test_single_files_pipelines(self):
        self.assertBody(self.get("/projects/42/packages/abc", A), 400, {"error": "package_id is invalid"})
        self.assertBody(self.get("/projects/42/packages/9999", A), 404, {"message": "404 Not found"})
        self.assertBody(self.get("/projects/42/packages/6", A), 404, {"message": "404 Not found"})  # hidden
        self.assertBody(self.get("/projects/42/packages/16", A), 404, {"message": "404 Not found"})  # other project
        self.assertBody(self.get("/projects/42/packages/9", A), 404, {"message": "Package not found"})  # error
        one = self.get("/projects/42/packages/1", A).json()
        self.assertEqual([v["version"] for v in one["versions"]], ["1.1.0"])
        files = self.get("/projects/42/packages/11/package_files?order_by=file_name&sort=desc", A)
        self.assertEqual([f["file_name"] for f in files.json()], ["tool-linux.bin", "README.txt"])
        self.assertEqual(files.h("x-total"), "2")
        self.assertIn("package_id=11", files.h("link"))
        tool = files.json()[0]
        self.assertEqual(tool["size"], 4096)
        dl = self.get(f"/projects/42/packages/11/package_files/{tool['id']}/download", A)
        self.assertEqual(hashlib.sha256(dl.body).hexdigest(), tool["file_sha256"])
        self.assertEqual(dl.h("content-disposition"), 'attachment; filename="tool-linux.bin"')
        npm_file = self.get("/projects/42/packages/1/package_files", A).json()[0]
        self.assertEqual(npm_file["file_name"], "@acme/util-1.0.0.tgz")
        # keyset pipelines: 25 -> 20 + 5
        p1 = self.get("/projects/42/packages/11/pipelines", A)
        ids1 = [p["id"] for p in p1.json()]
        self.assertEqual((len(ids1), ids1, p1.h("x-total")), (20, sorted(ids1, reverse=True), None))
        nxt = p1.h("link")
        self.assertTrue(nxt.endswith('>; rel="next"'))
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(nxt[1:nxt.index(">")]).query)
        self.assertEqual({k: v[0] for k, v in q.items() if k != "cursor"}, {"id": "42", "package_id": "11",
                                                                           "per_page": "20"})
        p2 = http_req("GET", nxt[1:nxt.index(">")], A)
        ids2 = [p["id"] for p in p2.json()]
        self.assertEqual(len(ids2), 5)
        self.assertLess(max(ids2), min(ids1))
        self.assertIsNone(p2.h("link"))
        self.assertEqual(self.get("/projects/42/packages/11/pipelines?per_page=21", A).status, 400)
        self.assertEqual(set(p1.json()[0]), {"id", "iid", "project_id", "sha", "ref", "status", "source",
                                             "created_at", "updated_at", "web_url", "user"})

    def test_delete(self):
        self.assertBody(self.req("DELETE", "/projects/42/packages/1", A), 403, {"message": "403 Forbidden"})
        self.assertEqual(self.req("DELETE", "/projects/42/packages/1",
                                  {**M, "If-Unmodified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}).status, 412)
        self.assertEqual(self.req("DELETE", "/projects/42/packages/1", M).status, 204)
        self.assertEqual(list(self.get(f"{P42}/@acme%2futil", A).json()["versions"]), ["1.1.0"])
        self.assertEqual(self.req("DELETE", "/projects/42/packages/1", M).status, 404)
        fid = self.get("/projects/42/packages/2/package_files", A).json()[0]["id"]
        self.assertEqual(self.req("DELETE", f"/projects/42/packages/2/package_files/{fid}", A).status, 403)
        self.assertEqual(self.req("DELETE", f"/projects/42/packages/2/package_files/{fid}", M).status, 204)
        self.assertEqual(self.get(f"{P42}/@acme%2futil", A).json()["versions"], {})
        self.fake.ctl("POST", "npm/delete_version", {"project_id": 42, "name": "@acme/ui", "version": "2.1.0"})
        self.assertEqual(list(self.get(f"{P42}/@acme%2fui", A).json()["versions"]), ["2.0.0"])

    def test_projects_groups_rename_revoke(self):
        self.assertEqual(self.get("/projects/acme%2Fweb", A).json()["id"], 42)
        self.assertBody(self.get("/projects/42"), 404, {"message": "404 Project Not Found"})
        self.assertEqual(self.get("/groups/acme%2Fsub", A).json()["full_path"], "acme/sub")
        self.fake.ctl("POST", "projects/rename", {"project_id": 42, "path": "acme/website"})
        r = self.get("/projects/acme%2Fweb/packages?per_page=5", A)
        self.assertEqual((r.status, r.h("location")), (301, f"{self.fake.url}/api/v4/projects/42/packages?per_page=5"))
        self.assertBody(self.req("PUT", "/projects/acme%2Fweb/packages/npm/@acme%2fx", A, {}), 405,
                        {"message": "Non GET methods are not allowed for moved projects"})
        self.assertEqual(self.get("/projects/acme%2Fwebsite/packages/npm/@acme%2futil", A).status, 200)
        self.assertEqual(self.get(f"{P42}/@acme%2futil", {"PRIVATE-TOKEN": fg.REVOKED_PAT}).status, 200)
        self.fake.ctl("POST", "tokens/revoke", {"token": fg.REVOKED_PAT})
        self.assertBody(self.get(f"{P42}/@acme%2futil", {"PRIVATE-TOKEN": fg.REVOKED_PAT}), 401,
                        {"error": "invalid_token", "error_description":
                         "Token was revoked. You can either do re-authorization or token refresh."})


class Control(Base):
    def test_requests_counter_and_log(self):
        self.get(f"{P42}/@acme%2futil?x=1", A)
        self.get(f"{P42}/@acme%2futil", A)
        c = self.fake.ctl("GET", "requests")
        self.assertEqual(c["total"], 2)
        self.assertEqual(c["by_path"], {f"GET /api/v4{P42}/@acme%2futil": 2})
        log = self.fake.ctl("GET", "requests/log")
        self.assertEqual(log[0]["query"], "x=1")
        self.assertEqual(log[0]["headers"]["private-token"], fg.ALICE_PAT)
        self.fake.ctl("POST", "requests/reset")
        self.assertEqual(self.fake.ctl("GET", "requests")["total"], 0)

    def test_npm_add(self):
        r = self.fake.ctl("POST", "npm/add", {"project_id": 7, "name": "@pub/big", "version": "1.0.0",
                                              "dependencies": {"@pub/left": "^1.0.0"}, "tags": ["latest", "next"],
                                              "size": 100_000})
        self.assertGreater(r["size"], 100_000)
        doc = self.get("/projects/7/packages/npm/@pub%2fbig").json()
        self.assertEqual(doc["dist-tags"], {"latest": "1.0.0", "next": "1.0.0"})
        self.assertEqual(hashlib.sha1(http_req("GET", doc["versions"]["1.0.0"]["dist"]["tarball"]).body).hexdigest(),
                         r["shasum"])

    def test_faults(self):
        url = f"{P42}/@acme%2futil"
        self.fake.ctl("POST", "fault", {"match": "/packages/npm/", "kind": "500", "count": 1})
        self.assertBody(self.get(url, A), 500, {"message": "500 Internal Server Error"})
        self.assertEqual(self.get(url, A).status, 200)
        for kind in ("502", "503", "429"):
            self.fake.ctl("POST", "fault", {"match": "@acme", "kind": kind, "count": 1})
            self.assertEqual(self.get(url, A).status, int(kind))
        self.fake.ctl("POST", "fault", {"match": "@acme", "kind": "reset", "count": 1})
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            self.get(url, A)
        self.fake.ctl("POST", "fault", {"match": "@acme", "kind": "truncate", "count": 1})
        with self.assertRaises((http.client.IncompleteRead, ConnectionError, OSError)):
            self.get(url, A)
        self.fake.ctl("POST", "fault", {"match": "@acme", "kind": "slow", "count": 1, "delay_ms": 20})
        t0 = time.monotonic()
        self.assertEqual(self.get(url, A).status, 200)
        self.assertGreater(time.monotonic() - t0, 0.03)
        self.fake.ctl("POST", "fault", {"match": "@acme", "kind": "hang", "count": 0})
        with self.assertRaises((socket.timeout, TimeoutError)):
            self.get(url, A, timeout=0.5)
        threading.Timer(0.3, lambda: self.fake.ctl("POST", "fault/clear")).start()
        self.assertEqual(self.get(url, A, timeout=10).status, 200)
        self.assertEqual(self.get(url, A).status, 200)

    def test_override(self):
        path = f"/api/v4{P42}/@acme%2futil"
        self.fake.ctl("POST", "override", {"method": "GET", "path": path, "status": 302,
                                           "headers": {"Location": "http://evil.example/x"}, "body": "", "count": 1})
        r = self.get(f"{P42}/@acme%2futil", A)
        self.assertEqual((r.status, r.h("location")), (302, "http://evil.example/x"))
        self.assertEqual(self.get(f"{P42}/@acme%2futil", A).status, 200)

    def test_down_up(self):
        url = f"{P42}/@acme%2futil"
        self.fake.ctl("POST", "down", {"seconds": 60})
        with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
            self.get(url, A)
        self.assertEqual(self.fake.ctl("GET", "world")["go_host"], GO_HOST)  # control still answers
        self.fake.ctl("POST", "up")
        self.assertEqual(self.get(url, A).status, 200)
        # refuse mode: the listening socket is really closed; control goes through the aux port
        ctl = self.fake.ctl("GET", "world")["control_url"].rsplit("/__fake", 1)[0]
        self.fake.ctl("POST", "down", {"mode": "refuse"})
        with self.assertRaises(ConnectionRefusedError):
            self.get(url, A)
        self.fake.ctl("POST", "up", base=ctl)
        self.assertEqual(self.get(url, A).status, 200)
        self.fake.ctl("POST", "down", {"mode": "refuse", "seconds": 0.3})
        time.sleep(0.8)
        self.assertEqual(self.get(url, A).status, 200)

    def test_hostile_input(self):
        host, port = "127.0.0.1", int(self.fake.url.rsplit(":", 1)[1])
        garbage = [b"\x00\xff\xfe garbage\r\n\r\n", b"GET /api/v4/" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                   b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                   b"PUT /api/v4/projects/42/packages/npm/x HTTP/1.1\r\nContent-Length: zz\r\n\r\n",
                   b"POST /api/v4/packages/npm/-/npm/v1/security/audits/quick HTTP/1.1\r\n"
                   b"Transfer-Encoding: chunked\r\nPRIVATE-TOKEN: alice-pat\r\n\r\nzz\r\n",
                   b"GET /api/v4/projects/%ff%fe/packages/npm/%c0%af HTTP/1.1\r\nHost: x\r\n\r\n",
                   b"GET /api/v4/projects/42/packages?page=99999999999999999999999&per_page=-1 HTTP/1.1\r\n\r\n",
                   b"GET /api/v4/projects/42/packages/npm/@acme%2futil HTTP/1.1\r\nAuthorization: Basic !!!\r\n\r\n",
                   b"GET /api/v4/projects/42/packages/11/pipelines?cursor=%%%% HTTP/1.1\r\n"
                   b"PRIVATE-TOKEN: alice-pat\r\n\r\n"]
        for payload in garbage:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(payload)
                try:
                    s.shutdown(socket.SHUT_WR)
                    s.recv(65536)
                except OSError:
                    pass
        r = self.get("/projects/42/packages/npm/@acme%2futil", {"PRIVATE-TOKEN": fg.ALICE_PAT + "\x7f"})
        self.assertEqual(r.status, 401)
        self.assertEqual(self.get(f"{P42}/@acme%2futil", A).status, 200)
        self.assertIsNone(self.fake.proc.poll())


class RealClients(Base):
    def test_npm_install_private_scoped(self):
        npm = require_tool("npm", "/usr/bin/npm")
        tmp = tempfile.mkdtemp(prefix="fake-selftest-npm-")
        try:
            registry = f"{self.fake.api}/projects/42/packages/npm/"
            authkey = registry.split(":", 1)[1]
            with open(os.path.join(tmp, ".npmrc"), "w") as f:
                f.write(f"@acme:registry={registry}\n{authkey}:_authToken={fg.ALICE_PAT}\n")
            with open(os.path.join(tmp, "package.json"), "w") as f:
                json.dump({"name": "selftest", "version": "1.0.0", "private": True,
                           "dependencies": {"@acme/app": "1.0.0"}}, f)
            env = {**os.environ, "HOME": tmp, "npm_config_cache": os.path.join(tmp, "cache"),
                   "npm_config_userconfig": os.path.join(tmp, ".npmrc"), "npm_config_update_notifier": "false"}
            out = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=tmp, env=env,
                                 capture_output=True, text=True, timeout=300)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            with open(os.path.join(tmp, "node_modules", "@acme", "util", "package.json")) as f:
                self.assertEqual(json.load(f)["version"], "1.1.0")
            with open(os.path.join(tmp, "node_modules", "@acme", "app", "index.js")) as f:
                self.assertIn("@acme/app@1.0.0", f.read())
            log = self.fake.ctl("GET", "requests/log")
            tarballs = [e for e in log if e["path"].endswith(".tgz")]
            self.assertEqual(len(tarballs), 2)
            self.assertTrue(all(e["headers"].get("authorization") == f"Bearer {fg.ALICE_PAT}" for e in tarballs))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_npm_publish_dist_tag_deprecate(self):
        npm = require_tool("npm", "/usr/bin/npm")
        tmp = tempfile.mkdtemp(prefix="fake-selftest-npmpub-")
        try:
            registry = f"{self.fake.api}/projects/42/packages/npm/"
            with open(os.path.join(tmp, ".npmrc"), "w") as f:
                f.write(f"@acme:registry={registry}\n{registry.split(':', 1)[1]}:_authToken={fg.MAINT_PAT}\n")
            pkg = os.path.join(tmp, "pkg")
            os.makedirs(pkg)
            with open(os.path.join(pkg, "package.json"), "w") as f:
                json.dump({"name": "@acme/published", "version": "3.0.0", "main": "index.js",
                           "dependencies": {"@acme/util": "^1.0.0"}}, f)
            with open(os.path.join(pkg, "index.js"), "w") as f:
                f.write('module.exports = "published";\n')
            env = {**os.environ, "HOME": tmp, "npm_config_cache": os.path.join(tmp, "cache"),
                   "npm_config_userconfig": os.path.join(tmp, ".npmrc"), "npm_config_update_notifier": "false"}

            def npm_run(*args, cwd=tmp):
                out = subprocess.run([npm, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                return out.stdout

            npm_run("publish", cwd=pkg)
            doc = self.get(f"{P42}/@acme%2fpublished", A).json()
            self.assertEqual(doc["versions"]["3.0.0"]["dependencies"], {"@acme/util": "^1.0.0"})
            tgz = http_req("GET", doc["versions"]["3.0.0"]["dist"]["tarball"], A)
            self.assertEqual(hashlib.sha1(tgz.body).hexdigest(), doc["versions"]["3.0.0"]["dist"]["shasum"])
            npm_run("dist-tag", "add", "@acme/published@3.0.0", "stable")
            self.assertIn("stable: 3.0.0", npm_run("dist-tag", "ls", "@acme/published"))
            npm_run("dist-tag", "rm", "@acme/published", "stable")
            self.assertEqual(self.get(f"{P42}/-/package/@acme%2fpublished/dist-tags", A).json(), {"latest": "3.0.0"})
            npm_run("deprecate", "@acme/published@3.0.0", "do not use")
            doc = self.get(f"{P42}/@acme%2fpublished", A).json()
            self.assertEqual(doc["versions"]["3.0.0"]["deprecated"], "do not use")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_go_mod_download_public(self):
        go = require_tool("go", "/usr/bin/go")
        tmp = tempfile.mkdtemp(prefix="fake-selftest-go-")
        try:
            gopath = os.path.join(tmp, "gopath")
            modcache = os.path.join(gopath, "pkg", "mod")
            work = os.path.join(tmp, "work")
            os.makedirs(work)
            with open(os.path.join(work, "go.mod"), "w") as f:
                f.write(f"module example.com/selftest\n\ngo 1.19\n\nrequire (\n\t{GO_HOST}/pub/gomods v1.2.0\n"
                        f"\t{GO_HOST}/pub/gomods/Caps v1.0.0\n)\n")
            env = {**os.environ, "HOME": tmp, "GOPATH": gopath, "GOMODCACHE": modcache,
                   "GOCACHE": os.path.join(tmp, "gocache"), "GOFLAGS": "-mod=mod", "GONOSUMDB": GO_HOST,
                   "GOSUMDB": "off", "GOPRIVATE": "", "GONOPROXY": "", "GOTOOLCHAIN": "local",
                   "GOPROXY": f"{self.fake.api}/projects/8/packages/go"}
            out = subprocess.run([go, "mod", "download", "-json", f"{GO_HOST}/pub/gomods",
                                  f"{GO_HOST}/pub/gomods/Caps"], cwd=work, env=env, capture_output=True,
                                 text=True, timeout=300)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertTrue(os.path.exists(os.path.join(modcache, GO_HOST, "pub", "gomods@v1.2.0", "hello.go")))
            self.assertTrue(os.path.exists(os.path.join(modcache, GO_HOST, "pub", "gomods", "!caps@v1.0.0",
                                                        "go.mod")))
            self.assertTrue(os.path.exists(os.path.join(modcache, "cache", "download", GO_HOST, "pub", "gomods",
                                                        "@v", "v1.2.0.zip")))
            # @latest resolution falls back to @v/list (the fake has no @latest, like GitLab)
            out = subprocess.run([go, "list", "-m", "-json", f"{GO_HOST}/pub/gomods@latest"], cwd=work, env=env,
                                 capture_output=True, text=True, timeout=300)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertEqual(json.loads(out.stdout)["Version"], "v1.2.0")
        finally:
            subprocess.run(["chmod", "-R", "u+w", tmp], check=False)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
