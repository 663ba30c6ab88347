"""Black-box harness for the end-to-end suite.

Everything here drives processes: the release binary (``target/release/packrat``, or
``$PACKRAT_BIN``), the independent fake GitLab (``fake_gitlab.py``, its own process, no
code shared with packrat) and the real clients (npm, pnpm 9, yarn 1, yarn 4, bun, go).
All of it listens on 127.0.0.1 only.

Tool policy (one place): under ``CI`` a missing client or binary fails the test; elsewhere
the test is skipped with the reason printed.
"""

import atexit
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PACKRAT_BIN = os.environ.get("PACKRAT_BIN", os.path.join(ROOT, "target", "release", "packrat"))
TOOLS = os.environ.get("PACKRAT_E2E_TOOLS", os.path.join(ROOT, "target", "e2e-tools"))
RESULTS = os.environ.get("PACKRAT_E2E_RESULTS", os.path.join(ROOT, "target", "e2e-results.jsonl"))
CI = bool(os.environ.get("CI"))
GO_HOST = "gitlab.example.com"

# Tokens of the fake's world (fake_gitlab.py).
ALICE = "alice-pat"
MAINT = "maint-pat"
GUEST = "guest-pat"
BOB = "bob-pat"
REVOKED = "revoked-pat"
JOB = "job-running"
DEPLOY_READ = "deploy-read"
DEPLOY_WRITE = "deploy-write"
OPS_TOKEN = "e2e-ops-token"


def require(path_or_name, what=None):
    """The path of a tool; fails under CI, skips elsewhere, when it is missing."""
    found = path_or_name if os.path.isabs(path_or_name) else shutil.which(path_or_name)
    if found and os.path.exists(found):
        return found
    reason = f"{what or path_or_name} is not installed (scripts/e2e installs it)"
    if CI:
        raise AssertionError(f"required under CI: {reason}")
    raise unittest.SkipTest(reason)


def record(**cell):
    """Append one result cell (client x prefix x mode) for the closing table."""
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(cell) + "\n")


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field="VmRSS"):
    """A process's resident memory (or its peak, ``VmHWM``) in KiB, from /proc."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(predicate, timeout=20.0, what="condition"):
    """Poll instead of sleeping: returns once ``predicate()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# ---- HTTP ------------------------------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value (last wins)
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def request(method, url, headers=None, body=None, timeout=30.0, ca=None):
    """One request, no redirects followed, on a fresh connection."""
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https":
        import ssl

        ctx = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    path = u.path + (f"?{u.query}" if u.query else "")
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def get(url, headers=None, **kw):
    return request("GET", url, headers, **kw)


def token_headers(token, carrier="PRIVATE-TOKEN"):
    if token is None:
        return {}
    if carrier == "Bearer":
        return {"Authorization": f"Bearer {token}"}
    if carrier == "Basic":
        return {"Authorization": "Basic " + base64.b64encode(f"me:{token}".encode()).decode()}
    return {carrier: token}


# ---- processes -------------------------------------------------------------------------------


_LIVE = []


@atexit.register
def _stop_leftovers():
    """A class whose setUpClass failed never reaches its tearDownClass: stop what it started."""
    for p in list(_LIVE):
        if p.proc.poll() is None:
            p.proc.kill()


class Process:
    """A child process whose stdout/stderr are collected in memory and in a log file."""

    def __init__(self, argv, env=None, cwd=None, name="proc", log_dir=None):
        self.name = name
        self.log_path = os.path.join(log_dir or tempfile.gettempdir(), f"{name}-{os.getpid()}-{id(self)}.log")
        self._lines = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        _LIVE.append(self)

    def _drain(self):
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.proc.stdout:
                with self._lock:
                    self._lines.append(line)
                log.write(line)
                log.flush()

    def output(self):
        with self._lock:
            return "".join(self._lines)

    def wait_for_line(self, prefix, timeout=30.0):
        def found():
            with self._lock:
                for line in self._lines:
                    if line.startswith(prefix):
                        return line[len(prefix):].strip()
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            return None

        return wait_until(found, timeout, f"{self.name} to print {prefix!r}")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        if self in _LIVE:
            _LIVE.remove(self)
        return self.proc.returncode

    def kill9(self):
        return self.stop(signal.SIGKILL)


class Fake:
    """The fake GitLab (fake_gitlab.py) as its own process, with its control API."""

    def __init__(self, *extra_args):
        self.process = Process(
            [sys.executable, os.path.join(HERE, "fake_gitlab.py"), "--port", "0", "--go-host", GO_HOST, *extra_args],
            name="fake-gitlab",
        )
        self.url = self.process.wait_for_line("fake-gitlab listening on ")
        self.world = self.control("GET", "world")

    def control(self, method, path, body=None):
        r = request(method, f"{self.url}/__fake/{path}", body=body if body is not None else None)
        if r.status >= 400:
            raise AssertionError(f"fake control {method} {path}: {r}")
        return r.json() if r.body else None

    def requests(self):
        return self.control("GET", "requests")

    def count(self, needle, method=None):
        """Requests whose "METHOD path" contains ``needle``."""
        by_path = self.requests()["by_path"]
        return sum(n for k, n in by_path.items() if needle in k and (method is None or k.startswith(method + " ")))

    def reset_requests(self):
        self.control("POST", "requests/reset")

    def log(self):
        return self.control("GET", "requests/log")

    def settings(self, **kw):
        self.control("POST", "settings", kw)

    def fault(self, match, kind, count=0, delay_ms=0):
        self.control("POST", "fault", {"match": match, "kind": kind, "count": count, "delay_ms": delay_ms})

    def clear_faults(self):
        self.control("POST", "fault/clear")

    def override(self, path, status, headers=None, body="", method="GET", count=0):
        self.control(
            "POST",
            "override",
            {"method": method, "path": path, "status": status, "headers": headers or {}, "body": body, "count": count},
        )

    def clear_overrides(self):
        self.control("POST", "override/clear")

    def down(self):
        self.control("POST", "down", {"seconds": 3600})

    def up(self):
        self.control("POST", "up")

    def stop(self):
        self.process.stop()


class Packrat:
    """The release binary as a separate process, on its own data directory."""

    def __init__(self, upstream=None, config="", data_dir=None, port=0, tls=None, env=None, log="packrat=debug", timeout="10s", server_extra=""):
        self.tmp = tempfile.mkdtemp(prefix="packrat-e2e-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.tls = tls
        self.env = env or {}
        self.rust_log = log
        self.port = port
        self.extra = config
        self.upstream = upstream
        self.timeout = timeout
        self.server_extra = server_extra
        self.process = None
        self.url = None

    # The config every packrat of the suite starts from; ``extra`` must not repeat the
    # [server], [storage] or [upstream] tables.
    def config_text(self, port=None):
        server = [f'listen = "127.0.0.1:{self.port if port is None else port}"', f'ops_tokens = ["{sha256_hex(OPS_TOKEN)}"]']
        if self.tls:
            server += [f'tls_cert = "{self.tls.cert}"', f'tls_key = "{self.tls.key}"']
        text = "[server]\n" + "\n".join(server) + "\n" + self.server_extra + "\n"
        text += f'[storage]\ndir = "{self.data_dir}"\nmemory_cache = "64MiB"\n\n'
        text += f'[upstream]\nurl = "{self.upstream or "http://127.0.0.1:9"}"\ntimeout = "{self.timeout}"\nconnect_timeout = "2s"\n\n'
        return text + self.extra + "\n"

    @property
    def config_path(self):
        return os.path.join(self.tmp, "packrat.toml")

    def write_config(self):
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(self.config_text())

    def proc_env(self):
        env = dict(os.environ)
        env.pop("PACKRAT_CONFIG", None)
        env["RUST_LOG"] = self.rust_log
        env.update(self.env)
        return env

    def start(self):
        require(PACKRAT_BIN, "target/release/packrat (cargo build --release)")
        self.write_config()
        self.process = Process([PACKRAT_BIN, "serve", "--config", self.config_path], env=self.proc_env(), name="packrat")
        self.url = self.process.wait_for_line("packrat listening on ")
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self):
        if self.process:
            code = self.process.stop()
            self.process = None
            return code
        return None

    def kill9(self):
        if self.process:
            self.process.kill9()
            self.process = None

    def restart(self):
        self.stop()
        return self.start()

    def logs(self):
        return self.process.output() if self.process else ""

    @property
    def pid(self):
        return self.process.proc.pid if self.process else None

    def run(self, *args, env=None, timeout=300, check=True):
        """A one-shot command (sync, export, import, verify, gc, pins, keygen) on this config."""
        require(PACKRAT_BIN, "target/release/packrat (cargo build --release)")
        self.write_config()
        e = self.proc_env()
        e.update(env or {})
        r = subprocess.run(
            [PACKRAT_BIN, *args, "--config", self.config_path],
            env=e,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"packrat {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def metrics(self):
        return get(f"{self.url}/-/metrics").body.decode()

    def metric(self, name, **labels):
        """The sum of a Prometheus counter/gauge's samples matching ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, lbl = head.partition("{")
            if metric not in (name, name + "_total"):
                continue
            got = dict(kv.split("=", 1) for kv in lbl.rstrip("}").split(",") if "=" in kv)
            got = {k: v.strip('"') for k, v in got.items()}
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(value)
        return total

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Tls:
    """A self-signed certificate for 127.0.0.1 (openssl), for https packrats."""

    def __init__(self):
        openssl = require("openssl")
        self.dir = tempfile.mkdtemp(prefix="packrat-tls-")
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )


class Recorder:
    """A hostile or third-party HTTP server on 127.0.0.1 that answers every request with
    ``status``/``body`` and records what reached it (method, path, headers)."""

    def __init__(self, status=200, body=b"evil", headers=None, routes=None):
        import http.server

        recorder = self
        self.seen = []
        self.lock = threading.Lock()
        # path -> (status, headers, body), answered instead of the default
        self.routes = routes or {}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with recorder.lock:
                    recorder.seen.append(
                        {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
                    )
                st, hd, bd = recorder.routes.get(self.path.split("?")[0], (status, headers or {}, body))
                self.send_response(st)
                for k, v in hd.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(bd)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(bd)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requests(self):
        with self.lock:
            return list(self.seen)

    def credentials_seen(self):
        names = ("authorization", "private-token", "job-token", "deploy-token")
        return [(r["path"], k, v) for r in self.requests() for k, v in r["headers"].items() if k in names]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---- clients ---------------------------------------------------------------------------------


def tool(rel):
    return os.path.join(TOOLS, "node_modules", rel)


NODE_CLIENTS = {
    "npm": lambda: [require("npm")],
    "pnpm": lambda: [require("node"), require(tool("pnpm/bin/pnpm.cjs"), "pnpm 9")],
    "yarn1": lambda: [require("node"), require(tool("yarn/bin/yarn.js"), "yarn 1")],
    "yarn4": lambda: [require("node"), require(tool("@yarnpkg/cli-dist/bin/yarn.js"), "yarn 4")],
    "bun": lambda: [require(tool("bun/bin/bun.exe"), "bun")],
}


class Workdir:
    """An isolated project directory with its own HOME and client caches."""

    def __init__(self, name):
        self.root = tempfile.mkdtemp(prefix=f"e2e-{name}-")
        self.dir = os.path.join(self.root, "project")
        self.home = os.path.join(self.root, "home")
        os.makedirs(self.dir)
        os.makedirs(self.home)

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def write(self, name, text):
        with open(self.path(name), "w", encoding="utf-8") as f:
            f.write(text)

    def read(self, name):
        with open(self.path(name), encoding="utf-8") as f:
            return f.read()

    def env(self, extra=None):
        home = self.home
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "USERPROFILE": home,
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "XDG_CACHE_HOME": os.path.join(home, ".cache"),
            "XDG_DATA_HOME": os.path.join(home, ".local/share"),
            "npm_config_cache": os.path.join(home, ".npm"),
            "npm_config_userconfig": os.path.join(home, ".npmrc"),
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
            "YARN_CACHE_FOLDER": os.path.join(home, ".yarn-cache"),
            "YARN_ENABLE_TELEMETRY": "0",
            "YARN_ENABLE_GLOBAL_CACHE": "0",
            "BUN_INSTALL_CACHE_DIR": os.path.join(home, ".bun-cache"),
            "DO_NOT_TRACK": "1",
            "CI": "true",
            "COREPACK_ENABLE_STRICT": "0",
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def run(self, argv, env=None, timeout=240, check=True):
        r = subprocess.run(argv, cwd=self.dir, env=self.env(env), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {r.returncode} in {self.dir}:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}")
        return r

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def npm_prefix(base, prefix, group="acme", project="42"):
    """The registry URL of an npm prefix: project, group or instance."""
    if prefix == "project":
        return f"{base}/api/v4/projects/{project}/packages/npm/"
    if prefix == "group":
        return f"{base}/api/v4/groups/{group}/-/packages/npm/"
    return f"{base}/api/v4/packages/npm/"


def configure_node_client(work, client, base, registry, token, scope="acme", publish=False):
    """Writes the exact client config the README documents for ``client``."""
    u = urllib.parse.urlsplit(base)
    hostport = f"{u.hostname}:{u.port}"
    path = urllib.parse.urlsplit(registry).path
    if client in ("npm", "pnpm"):
        # One token entry for packrat's host covers every prefix for installs: packrat keeps
        # the prefix in tarball URLs and serves tarballs at all three. npm publish looks for a
        # token under the registry's own path.
        lines = [f"@{scope}:registry={registry}", f"//{hostport}/:_authToken={token}"]
        if publish:
            lines.append(f"//{hostport}{path}:_authToken={token}")
        work.write(".npmrc", "\n".join(lines) + "\n")
    if client == "bun":
        work.write(
            "bunfig.toml",
            f'[install.scopes]\n{scope} = {{ url = "{registry}", token = "{token}" }}\n',
        )
        if publish:
            work.write(".npmrc", f"@{scope}:registry={registry}\n//{hostport}{path}:_authToken={token}\n")
    if client == "yarn1":
        # yarn 1 sends a token only to URLs under a path that has its own _authToken line.
        work.write(
            ".npmrc",
            f"@{scope}:registry={registry}\n//{hostport}{path}:_authToken={token}\n//{hostport}/:_authToken={token}\n",
        )
    if client == "yarn4":
        work.write(
            ".yarnrc.yml",
            "\n".join(
                [
                    "enableTelemetry: false",
                    "enableGlobalCache: false",
                    "nodeLinker: node-modules",
                    f'unsafeHttpWhitelist: ["{u.hostname}"]',
                    "npmScopes:",
                    f"  {scope}:",
                    f'    npmRegistryServer: "{registry}"',
                    f'    npmPublishRegistry: "{registry}"',
                    f'    npmAuthToken: "{token}"',
                    "    npmAlwaysAuth: true",
                    "    npmMinimalAgeGate: 0",
                    "",
                ]
            ),
        )


def install_command(client, frozen=False):
    base = NODE_CLIENTS[client]()
    if client == "npm":
        return base + (["ci"] if frozen else ["install"]) + ["--no-audit", "--no-fund"]
    if client == "pnpm":
        return base + ["install", "--frozen-lockfile" if frozen else "--no-frozen-lockfile", "--reporter=append-only"]
    if client == "yarn1":
        return base + ["install", "--non-interactive", "--no-progress"] + (["--frozen-lockfile"] if frozen else [])
    if client == "yarn4":
        return base + ["install"] + (["--immutable"] if frozen else ["--no-immutable"])
    if client == "bun":
        return base + ["install", "--no-progress"] + (["--frozen-lockfile"] if frozen else [])
    raise ValueError(client)


LOCKFILE = {
    "npm": "package-lock.json",
    "pnpm": "pnpm-lock.yaml",
    "yarn1": "yarn.lock",
    "yarn4": "yarn.lock",
    "bun": "bun.lock",
}


def installed_version(work, name):
    """The version of ``name`` the client put in node_modules (None when absent)."""
    p = os.path.join(work.dir, "node_modules", *name.split("/"), "package.json")
    if not os.path.exists(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f).get("version")


def go_env(work, goproxy, netrc=None, ca=None, extra=None):
    env = {
        "GOPATH": os.path.join(work.home, "go"),
        "GOMODCACHE": os.path.join(work.home, "go", "pkg", "mod"),
        "GOCACHE": os.path.join(work.home, "go-build"),
        "GOFLAGS": "-modcacherw",
        "GOPROXY": goproxy,
        "GONOSUMDB": GO_HOST,
        "GONOSUMCHECK": "1",
        "GOSUMDB": "off",
        "GOPRIVATE": "",
        "GONOPROXY": "none",
        "GOTOOLCHAIN": "local",
        "GO111MODULE": "on",
    }
    if netrc:
        with open(os.path.join(work.home, ".netrc"), "w", encoding="utf-8") as f:
            f.write(netrc)
        os.chmod(os.path.join(work.home, ".netrc"), 0o600)
        env["NETRC"] = os.path.join(work.home, ".netrc")
    if ca:
        env["SSL_CERT_FILE"] = ca
    env.update(extra or {})
    return env
