"""The operator's view in a real browser: ``GET /-/status`` and the ``/-/ui`` page.

packrat runs over https (the go command sends .netrc credentials only there), so the
session cookie carries ``Secure`` too. Debian's headless chromium is driven through
chromedriver's W3C WebDriver protocol by the small urllib client below (no Selenium): it
opens pages, types the operator token into the login form, clicks, reads the page source
and the cookies the browser keeps, and takes the screenshot the README shows
(``docs/operator-page.png``, rewritten by every run).

Traffic comes from real clients: npm installs ``@acme/app`` (and its dependency) twice
through packrat, the second time from the cache; go downloads and builds private and public
modules. The runs table is filled by real ``packrat sync``, ``gc`` and ``verify`` runs on
the same data directory before ``serve`` starts, and read back after a restart.
"""

import base64
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import harness as h
import test_clients as tc

SCREENSHOT = os.path.join(h.ROOT, "docs", "operator-page.png")
W3C_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
# Names the traffic below makes packrat learn; none may show before a login.
NAMES = ["@acme/app", "@acme/util", "gitlab.example.com/acme/gomods"]


def browser_tools():
    """chromium and chromedriver (Debian's); fails under CI, skips elsewhere, when missing."""
    chromium = None
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            chromium = shutil.which(name)
            break
    chromium = h.require(chromium or "chromium", "chromium (apt-get install chromium)")
    driver = h.require("chromedriver", "chromedriver (apt-get install chromium-driver)")
    return chromium, driver


class WebDriver:
    """A W3C WebDriver session with chromedriver, over plain HTTP."""

    def __init__(self, chromium, driver):
        self.port = h.free_port()
        self.profile = tempfile.mkdtemp(prefix="packrat-chromium-")
        self.process = h.Process([driver, f"--port={self.port}"], name="chromedriver")
        self.base = f"http://127.0.0.1:{self.port}"
        h.wait_until(self._ready, 20, "chromedriver to start")
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    # packrat's certificate is the suite's self-signed one.
                    "acceptInsecureCerts": True,
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1280,2200",
                            f"--user-data-dir={self.profile}",
                        ],
                    },
                }
            }
        }
        r = self._call("POST", "/session", caps, timeout=60)
        self.session = r["sessionId"]

    def _ready(self):
        try:
            return h.get(f"{self.base}/status", timeout=2).status == 200
        except OSError:
            return False

    def _call(self, method, path, body=None, timeout=60):
        r = h.request(method, self.base + path, body=body if body is not None else ({} if method == "POST" else None), timeout=timeout)
        data = json.loads(r.body or b"{}")
        if r.status >= 400:
            raise AssertionError(f"webdriver {method} {path}: {r.status} {data}")
        return data.get("value", data)

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url):
        self.cmd("POST", "/url", {"url": url})

    def source(self):
        return self.cmd("GET", "/source")

    def url(self):
        return self.cmd("GET", "/url")

    def find(self, css):
        found = self.cmd("POST", "/element", {"using": "css selector", "value": css})
        if not isinstance(found, dict) or W3C_ELEMENT not in found:
            raise AssertionError(f"no element {css!r} on {self.url()}: {found}")
        return found[W3C_ELEMENT]

    def exists(self, css):
        return bool(self.cmd("POST", "/elements", {"using": "css selector", "value": css}))

    def text(self, css):
        return self.cmd("GET", f"/element/{self.find(css)}/text")

    def type(self, css, text):
        self.cmd("POST", f"/element/{self.find(css)}/value", {"text": text})

    def click(self, css):
        self.cmd("POST", f"/element/{self.find(css)}/click")

    def cookies(self):
        return self.cmd("GET", "/cookie")

    def screenshot(self, path):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        return png

    def quit(self):
        try:
            self.cmd("DELETE", "")
        except (AssertionError, OSError):
            pass
        self.process.stop()
        shutil.rmtree(self.profile, ignore_errors=True)


class CrossSite:
    """A page on another site (``localhost``, not ``127.0.0.1``) that posts the login form
    to packrat with the right token, as a forged cross-site request would."""

    def __init__(self, target):
        page = f"""<!doctype html><html><body>
<form id="f" method="post" action="{target}/-/ui/login">
<input name="token" value="{h.OPS_TOKEN}"></form>
<script>document.getElementById('f').submit()</script></body></html>""".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}/evil.html"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def settled(check):
    """``check()``, or False while the page is being reloaded under the driver."""
    try:
        return check()
    except (AssertionError, KeyError, ValueError):
        return False


def ops(token=h.OPS_TOKEN):
    return {"PRIVATE-TOKEN": token}


class OperatorPage(unittest.TestCase):
    """Tests run in name order: traffic first, then what each kind of visitor sees."""

    @classmethod
    def setUpClass(cls):
        cls.chromium, cls.driver = browser_tools()
        cls.go = h.require("go")
        cls.npm = h.require("npm")
        cls.tls = h.Tls()
        cls.fake = h.Fake()
        cls.works = []
        cls.browser = None
        cls.packrat = h.Packrat(
            upstream=cls.fake.url,
            tls=cls.tls,
            config=f'[go]\nhost = "{h.GO_HOST}"\n',
            server_extra='ui_session_ttl = "1h"\n',
        )
        # Maintenance runs on this data directory before serve: the page shows them.
        listing = os.path.join(cls.packrat.tmp, "packrat.list")
        with open(listing, "w", encoding="utf-8") as f:
            f.write("npm @acme/ui@2.0.0 project=42\n")
        cls.packrat.run("sync", listing, env={"PACKRAT_UPSTREAM_TOKEN": h.ALICE})
        cls.packrat.run("gc", "--max-size", "10GiB")
        cls.packrat.run("verify")
        cls.packrat.start()
        cls.url = cls.packrat.url
        cls.browser = WebDriver(cls.chromium, cls.driver)

    @classmethod
    def tearDownClass(cls):
        if cls.browser:
            cls.browser.quit()
        cls.packrat.cleanup()
        cls.fake.stop()
        for w in cls.works:
            w.cleanup()

    def status(self, token=h.OPS_TOKEN):
        r = h.get(f"{self.url}/-/status", ops(token), ca=self.tls.cert)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def login_post(self, token, origin="self", cookie=None):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if origin == "self":
            headers["Origin"] = self.url
        elif origin:
            headers["Origin"] = origin
        if cookie:
            headers["Cookie"] = cookie
        body = urllib.parse.urlencode({"token": token}).encode()
        return h.request("POST", f"{self.url}/-/ui/login", headers, body, ca=self.tls.cert)

    def assert_no_names(self, text, where):
        for name in NAMES:
            self.assertNotIn(name, text, f"{name} visible {where}")
            self.assertNotIn(name.replace("/", "%2f"), text.lower(), f"{name} visible {where}")

    # ---- traffic from real clients ---------------------------------------------------------

    def test_0_traffic_from_npm_and_go(self):
        registry = h.npm_prefix(self.url, "project")
        for round_ in (1, 2):
            work = h.Workdir(f"ui-npm-{round_}")
            self.works.append(work)
            h.configure_node_client(work, "npm", self.url, registry, h.ALICE)
            work.write("package.json", tc.PACKAGE_JSON)
            env = {"npm_config_cafile": self.tls.cert}
            work.run(h.install_command("npm"), env=env)
            tc.check_node_install(self, work)
        go = h.Workdir("ui-go")
        self.works.append(go)
        go.write("go.mod", tc.GO_MOD)
        go.write("main.go", tc.GO_MAIN)
        env = h.go_env(
            go,
            tc.GO_PREFIXES["project"](self.url),
            netrc=f"machine 127.0.0.1 login me password {h.ALICE}\n",
            ca=self.tls.cert,
        )
        go.run([self.go, "mod", "tidy"], env=env)
        self.assertIn("v1.1.0", go.run([self.go, "run", "."], env=env).stdout)

    # ---- /-/status ---------------------------------------------------------------------------

    def test_1_status_answers_operators_only(self):
        for headers in ({}, ops("wrong"), {"PRIVATE-TOKEN": h.ALICE}, {"Authorization": "Basic " + base64.b64encode(f"x:{h.OPS_TOKEN}".encode()).decode()}):
            r = h.get(f"{self.url}/-/status", headers, ca=self.tls.cert)
            self.assertEqual(r.status, 401, (headers.keys(), r))
            self.assertEqual(r.json(), {"message": "401 Unauthorized"})
        r = h.get(f"{self.url}/-/status", {"Authorization": f"Bearer {h.OPS_TOKEN}"}, ca=self.tls.cert)
        self.assertEqual(r.status, 200)

    def test_2_status_reports_the_traffic(self):
        s = self.status()
        self.assertRegex(s["version"], r"^\d+\.\d+\.\d+")
        self.assertEqual(s["build"]["profile"], "release")
        self.assertGreaterEqual(s["uptime_seconds"], 0)
        self.assertTrue(s["upstream"]["reachable"], s["upstream"])
        self.assertGreater(s["upstream"]["latency_ms"]["samples"], 0)
        self.assertIsNotNone(s["upstream"]["latency_ms"]["p99"])
        by = {e["ecosystem"]: e for e in s["requests"]}
        npm, go = by["npm"], by["go"]
        self.assertGreater(npm["since_start"]["requests"], 0)
        self.assertGreater(npm["since_start"]["hits"], 0, "the second npm install came from the cache")
        self.assertGreater(npm["since_start"]["misses"], 0)
        self.assertGreater(npm["since_start"]["hit_ratio"], 0)
        self.assertGreater(go["last_hour"]["requests"], 0)
        self.assertEqual(len(npm["per_minute"]), 60)
        self.assertEqual(sum(m["requests"] for m in npm["per_minute"]), npm["last_hour"]["requests"])
        self.assertGreater(s["bytes"]["served_from_cache"], 0)
        self.assertGreater(s["bytes"]["served_from_upstream"], 0)
        self.assertGreater(s["store"]["blob_bytes"], 0)
        self.assertEqual(s["store"]["max_size"], 50 << 30)
        hot = {p["name"] for p in s["hot_packages"]}
        for name in NAMES:
            self.assertIn(name, hot)
        self.assertTrue(any(m["name"] == "@acme/app" for m in s["recent_misses"]), s["recent_misses"])
        pins = {p["name"] for p in s["pins"]["items"]}
        self.assertIn("@acme/app", pins)
        self.assertEqual(s["pins"]["count"], len(s["pins"]["items"]))
        # The runs of the commands before serve started, from the index.
        for kind in ("sync", "gc", "verify"):
            self.assertIsNotNone(s["runs"][kind], kind)
            self.assertTrue(s["runs"][kind]["ok"], s["runs"][kind])
        self.assertIn("1 items", s["runs"]["sync"]["summary"])
        self.assertIsNone(s["runs"]["import"])
        held = {x["ecosystem"]: x for x in s["mirror"]["holdings"]}
        self.assertGreater(held["npm"]["files"], 0)
        self.assertGreater(held["go"]["documents"], 0)

    # ---- the page without a session ----------------------------------------------------------

    def test_3_no_names_without_a_session(self):
        r = h.get(f"{self.url}/-/ui", ca=self.tls.cert)
        self.assertEqual(r.status, 200)
        self.assertIn(b'action="/-/ui/login"', r.body)
        self.assert_no_names(r.body.decode(), "on the login page")
        self.assertIsNone(r.header("set-cookie"))
        r = h.get(f"{self.url}/-/ui", {"Cookie": "packrat_ui=" + "0" * 64}, ca=self.tls.cert)
        self.assertIn(b'action="/-/ui/login"', r.body)
        self.assert_no_names(r.body.decode(), "with a made-up session")
        r = h.get(f"{self.url}/-/status", {"Cookie": "packrat_ui=" + "0" * 64}, ca=self.tls.cert)
        self.assertEqual(r.status, 401)
        self.assert_no_names(r.body.decode(), "in /-/status without a token")
        self.browser.open(f"{self.url}/-/ui")
        self.assertTrue(self.browser.exists("#token"))
        self.assert_no_names(self.browser.source(), "in the browser before login")

    # ---- login over HTTP: cookie attributes, wrong tokens, cross-site -----------------------

    def test_4_set_cookie_attributes(self):
        r = self.login_post(h.OPS_TOKEN)
        self.assertEqual(r.status, 303, r)
        self.assertEqual(r.header("location"), "/-/ui")
        cookie = r.header("set-cookie")
        self.assertIsNotNone(cookie)
        parts = [p.strip() for p in cookie.split(";")]
        name, _, value = parts[0].partition("=")
        self.assertEqual(name, "packrat_ui")
        self.assertRegex(value, r"^[0-9a-f]{64}$")
        attrs = {p.split("=")[0].lower(): p for p in parts[1:]}
        self.assertIn("httponly", attrs)
        self.assertEqual(attrs["samesite"], "SameSite=Strict")
        self.assertEqual(attrs["path"], "Path=/-/ui")
        self.assertIn("secure", attrs, "served over TLS: the cookie must say Secure")
        page = h.get(f"{self.url}/-/ui", {"Cookie": f"packrat_ui={value}"}, ca=self.tls.cert)
        self.assertIn(b"@acme/app", page.body)
        # Two logins are two sessions.
        again = self.login_post(h.OPS_TOKEN).header("set-cookie").split(";")[0]
        self.assertNotEqual(again, parts[0])

    def test_5_a_wrong_token_is_refused_slowly(self):
        started = time.monotonic()
        r = self.login_post("not-the-token")
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertEqual(r.status, 401)
        self.assertIsNone(r.header("set-cookie"))
        self.assertIn(b"not an operator token", r.body)
        self.assert_no_names(r.body.decode(), "after a wrong token")
        self.assertNotIn("not-the-token", self.packrat.logs())
        self.assertNotIn(h.OPS_TOKEN, self.packrat.logs())
        # A body past the limit is refused before it is read to the end.
        r = h.request(
            "POST",
            f"{self.url}/-/ui/login",
            {"Origin": self.url, "Content-Type": "application/x-www-form-urlencoded"},
            b"token=" + b"x" * 10000,
            ca=self.tls.cert,
        )
        self.assertEqual(r.status, 413)

    def test_6_cross_site_logins_are_refused(self):
        for origin in ("https://evil.example", "null", f"http://{self.url.split('://')[1]}", None):
            r = self.login_post(h.OPS_TOKEN, origin=origin)
            self.assertEqual(r.status, 403, (origin, r))
            self.assertIsNone(r.header("set-cookie"))
        # The same forgery from a real page on another site, in the browser.
        evil = CrossSite(self.url)
        try:
            self.browser.open(evil.url)
            h.wait_until(lambda: "/-/ui/login" in self.browser.url(), 15, "the forged form to be posted")
            source = self.browser.source()
            self.assertIn("cross-site", source)
            self.assert_no_names(source, "after a cross-site login")
            self.assertFalse([c for c in self.browser.cookies() if c["name"] == "packrat_ui"])
        finally:
            evil.stop()

    # ---- the page with a session, in the browser ---------------------------------------------

    def test_7_login_shows_numbers_and_names(self):
        b = self.browser
        b.open(f"{self.url}/-/ui")
        b.type("#token", h.OPS_TOKEN)
        b.click("#login")
        h.wait_until(lambda: b.exists("#hot-packages"), 15, "the status page after login")
        cookies = [c for c in b.cookies() if c["name"] == "packrat_ui"]
        self.assertEqual(len(cookies), 1, b.cookies())
        c = cookies[0]
        self.assertTrue(c["httpOnly"])
        self.assertEqual(c["sameSite"], "Strict")
        self.assertEqual(c["path"], "/-/ui")
        self.assertTrue(c["secure"])
        hot = b.text("#hot-packages")
        for name in NAMES:
            self.assertIn(name, hot)
        npm_total = int(b.text("#requests-npm .requests-total"))
        go_total = int(b.text("#requests-go .requests-total"))
        self.assertGreater(npm_total, 0)
        self.assertGreater(go_total, 0)
        self.assertIn("@acme/app", b.text("#pins"))
        self.assertIn("reachable", b.text("#reachable"))
        self.assertRegex(b.text("#p50"), r"^\d+ ms$")
        for kind in ("sync", "gc", "verify"):
            self.assertIn("ok", b.text(f"#run-{kind}"))
        source = b.source()
        self.assertIn("<svg", source)
        self.assertRegex(source, r'id="plot-requests".*<polyline')
        self.assertNotRegex(source, r"<script|https?://[^\"' ]*(cdn|googleapis)")
        # New traffic shows on the next refresh.
        for _ in range(3):
            h.get(f"{self.url}/api/v4/projects/42/packages/npm/@acme%2fapp", {"PRIVATE-TOKEN": h.ALICE}, ca=self.tls.cert)
        h.wait_until(lambda: settled(lambda: int(b.text("#requests-npm .requests-total")) >= npm_total + 3), 25, "the page to refresh")
        b.screenshot(SCREENSHOT)
        with open(SCREENSHOT, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_8_logout_ends_the_session(self):
        b = self.browser
        b.open(f"{self.url}/-/ui")
        if not b.exists("#logout"):
            b.type("#token", h.OPS_TOKEN)
            b.click("#login")
            h.wait_until(lambda: b.exists("#logout"), 15, "the status page")
        b.click("#logout")
        h.wait_until(lambda: b.exists("#token"), 15, "the login form after logout")
        self.assert_no_names(b.source(), "after logout")
        self.assertFalse([c for c in b.cookies() if c["name"] == "packrat_ui"])
        # A session id kept from before is dead server-side too.
        r = self.login_post(h.OPS_TOKEN)
        sid = r.header("set-cookie").split(";")[0]
        out = h.request("POST", f"{self.url}/-/ui/logout", {"Origin": self.url, "Cookie": sid}, b"", ca=self.tls.cert)
        self.assertEqual(out.status, 303)
        self.assertIn("Max-Age=0", out.header("set-cookie"))
        page = h.get(f"{self.url}/-/ui", {"Cookie": sid}, ca=self.tls.cert)
        self.assertIn(b'action="/-/ui/login"', page.body)
        self.assert_no_names(page.body.decode(), "with an ended session")
        forged = h.request("POST", f"{self.url}/-/ui/logout", {"Origin": "https://evil.example"}, b"", ca=self.tls.cert)
        self.assertEqual(forged.status, 403)

    def test_9_runs_survive_a_restart(self):
        before = self.status()["runs"]
        self.packrat.restart()
        type(self).url = self.packrat.url
        after = self.status()
        for kind in ("sync", "gc", "verify"):
            self.assertEqual(after["runs"][kind], before[kind])
        # Counters are in memory: a restart starts them again.
        self.assertEqual({e["ecosystem"]: e["since_start"]["requests"] for e in after["requests"]}["npm"], 0)


class OfflineMirror(unittest.TestCase):
    """A mirror shows what it holds and the bundle it imported last."""

    def test_counts_and_last_bundle(self):
        fake = h.Fake()
        syncer = h.Packrat(upstream=fake.url)
        mirror = None
        try:
            listing = os.path.join(syncer.tmp, "packrat.list")
            with open(listing, "w", encoding="utf-8") as f:
                f.write("npm @acme/ui@2.0.0 project=42\nnpm @acme/app@1.0.0 project=42\n")
            syncer.run("sync", listing, env={"PACKRAT_UPSTREAM_TOKEN": h.ALICE})
            bundle = os.path.join(syncer.tmp, "mirror.tar")
            syncer.run("export", "--out", bundle)
            fake.stop()
            mirror = h.Packrat(config="[cache]\noffline = true\n")
            mirror.run("import", bundle)
            mirror.start()
            r = h.get(f"{mirror.url}/-/status", ops())
            self.assertEqual(r.status, 200, r)
            s = r.json()
            self.assertTrue(s["offline"])
            self.assertIsNone(s["upstream"]["reachable"])
            held = {x["ecosystem"]: x for x in s["mirror"]["holdings"]}
            self.assertGreaterEqual(held["npm"]["documents"], 2)
            self.assertGreaterEqual(held["npm"]["files"], 2)
            last = s["mirror"]["last_bundle"]
            self.assertEqual(last["file"], "mirror.tar")
            self.assertGreaterEqual(last["blob_count"], 2)
            self.assertFalse(last["incremental"])
            self.assertFalse(last["signed"])
            self.assertTrue(s["runs"]["import"]["ok"])
            # The mirror's own runs: the exporter's sync did not travel in the bundle.
            self.assertIsNone(s["runs"]["sync"])
            r = h.get(f"{mirror.url}/-/status")
            self.assertEqual(r.status, 401)
        finally:
            if mirror:
                mirror.cleanup()
            syncer.cleanup()


if __name__ == "__main__":
    unittest.main()
