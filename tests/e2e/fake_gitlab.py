#!/usr/bin/env python3
"""An independent fake GitLab (npm registry, Go proxy, Packages API) for the e2e suite.

Written from the contract in ``shared/API.md`` only; it shares no code or rules with packrat.
Python 3.11, standard library only.

    python3 tests/e2e/fake_gitlab.py [--port 0] [--go-host gitlab.example.com]
                                     [--public-registry URL] [--verbose]

Binds 127.0.0.1. Once listening it prints exactly one line to stdout,
``fake-gitlab listening on http://127.0.0.1:PORT``, and serves until SIGTERM/SIGINT.

Two listeners live in this process:

* the *main* one (``PORT``): the GitLab API under ``/api/v4`` plus the control API
  ``/__fake/...``;
* the *aux* one (another port, see ``GET /__fake/world``): the "object storage" that signed
  302 redirects point at (``/objects/...``), and a second copy of the control API (usable while
  the main listener is closed by ``POST /__fake/down {"mode": "refuse"}``).

The world is deterministic: the same ids, bytes, hashes and times on every start (only
``last_downloaded_at`` moves when something is downloaded). See the constants below and
``GET /__fake/world``.

Control API (JSON in and out; on both listeners, never under /api/v4):

    GET  /__fake/world                     tokens, groups, projects, npm/go contents, URLs, settings
    GET  /__fake/requests                  {"total": n, "by_path": {"METHOD /path": n}} (no /__fake)
    POST /__fake/requests/reset
    GET  /__fake/requests/log              last 2000: {method, path, query, headers{lower: v}, status}
    GET|POST /__fake/settings              npm_forwarding, multiple_projects, tarball_redirect (bools),
                                           metadata_cache: "off" | "file" | "redirect"
    POST /__fake/npm/add                   {project_id, name, version, dependencies?, tags?, size?,
                                            status?, fields?}  (size = bytes of random padding)
    POST /__fake/npm/delete_version        {project_id, name, version}: gone from GitLab entirely
    POST /__fake/go/add                    {project_id, module (full path or subdir), version}
    POST /__fake/tokens/revoke             {token}
    POST /__fake/projects/rename           {project_id, path}  (old path then answers 301/405)
    POST /__fake/fault                     {match (substring of the path), kind, count (0 = until
                                            cleared; the default), delay_ms}; kinds: 500 502 503 429
                                            reset truncate slow hang ("hang" answers normally once
                                            cleared; "slow" pauses delay_ms (default 200) per 256 bytes)
    POST /__fake/fault/clear
    POST /__fake/override                  {method, path (exact, raw or decoded), status, headers,
                                            body, count (0 = until cleared)}
    POST /__fake/override/clear
    POST /__fake/down                      {seconds?, mode?}: mode "reset" (default): the listener
                                           stays open (so /__fake keeps answering on the main port)
                                           but every other request is answered by closing the
                                           connection with a RST, and open keep-alive connections are
                                           killed; mode "refuse": the listening socket is really
                                           closed (connection refused) and reopened on the same port
                                           by /__fake/up, which must then be sent to the aux listener
                                           (`control_url` in /__fake/world) or given `seconds`.
    POST /__fake/up
    GET  /__fake/objstore_seen_credentials [{header, value, path}] credentials the object store got
    POST /__fake/objstore_seen_credentials/reset
    POST /__fake/reset                     back to the initial world, settings, faults, counters

Interpretations of points that API.md leaves open are marked ``INTERPRETATION`` in comments.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import email.utils
import gzip
import hashlib
import hmac
import io
import json
import math
import posixpath
import random
import re
import signal
import socket
import struct
import sys
import tarfile
import threading
import time
import traceback
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote_plus, unquote

# =============================================================================================
# Public constants (the e2e suite imports these)
# =============================================================================================

ALICE_PAT = "alice-pat"  # PAT, user alice: Developer on 42, 43, 44
MAINT_PAT = "maint-pat"  # PAT, user maint: Maintainer on 42, 43, 44
GUEST_PAT = "guest-pat"  # PAT, user guest: Guest on 42
BOB_PAT = "bob-pat"  # PAT, user bob: no role anywhere
EXPIRED_PAT = "expired-pat"  # PAT, user eve: always 401 invalid_token (expired)
REVOKED_PAT = "revoked-pat"  # PAT, user rita: Developer on 42 until POST /__fake/tokens/revoke
JOB_RUNNING = "job-running"  # CI job token of a running job in 42
JOB_FINISHED = "job-finished"  # CI job token of a finished job in 42: 401
DEPLOY_READ = "deploy-read"  # deploy token, read_package_registry on 42
DEPLOY_WRITE = "deploy-write"  # deploy token, read+write_package_registry on 42
OAUTH_ALICE = "oauth-alice"  # OAuth access token of alice (Bearer only)

TOKENS = {
    "ALICE_PAT": ALICE_PAT,
    "MAINT_PAT": MAINT_PAT,
    "GUEST_PAT": GUEST_PAT,
    "BOB_PAT": BOB_PAT,
    "EXPIRED_PAT": EXPIRED_PAT,
    "REVOKED_PAT": REVOKED_PAT,
    "JOB_RUNNING": JOB_RUNNING,
    "JOB_FINISHED": JOB_FINISHED,
    "DEPLOY_READ": DEPLOY_READ,
    "DEPLOY_WRITE": DEPLOY_WRITE,
    "OAUTH_ALICE": OAUTH_ALICE,
}

GROUP_ACME = 10  # acme (private)
GROUP_ACME_SUB = 11  # acme/sub (private)
GROUP_PUB = 20  # pub (public)

PROJECT_WEB = 42  # acme/web (private)
PROJECT_TOOLS = 43  # acme/sub/tools (private)
PROJECT_PUB_LIB = 7  # pub/lib (public)
PROJECT_ACME_GOMODS = 44  # acme/gomods (private)
PROJECT_PUB_GOMODS = 8  # pub/gomods (public)

DEFAULT_GO_HOST = "gitlab.example.com"
DEFAULT_PUBLIC_REGISTRY = "https://registry.npmjs.org"

# npm seed: (project, name, version, dependencies, dist-tags, status, extra package.json keys)
NPM_SEED = [
    (42, "@acme/util", "1.0.0", {}, [], "default", {}),
    (42, "@acme/util", "1.1.0", {}, ["latest"], "default", {}),
    (42, "@acme/app", "1.0.0", {"@acme/util": "^1.0.0"}, ["latest"], "default", {}),
    (42, "@acme/ui", "2.0.0", {}, ["latest"], "default", {}),
    (42, "@acme/ui", "2.1.0", {}, ["beta"], "default", {}),
    (42, "@acme/hidden", "1.0.0", {}, ["latest"], "hidden", {}),
    (42, "@acme/gone", "1.0.0", {}, ["latest"], "pending_destruction", {}),
    (42, "@acme/old", "1.0.0", {}, ["latest"], "deprecated", {"deprecated": "use @acme/util instead"}),
    (42, "@acme/broken", "0.0.1", {}, ["latest"], "error", {}),
    # Same name in two projects of one namespace (newest in 43): group/instance pick 43 unless
    # the multiple-projects flag is on.
    (42, "@acme/shared", "1.0.0", {}, ["latest"], "default", {}),
    (43, "@acme/tool", "0.1.0", {}, ["latest"], "default", {}),
    (43, "@acme/shared", "2.0.0", {}, ["latest"], "default", {}),
    (7, "@pub/left", "1.0.0", {}, ["latest"], "default", {}),
    (7, "@pub/right", "1.0.0", {"@pub/left": "^1.0.0"}, ["latest"], "default", {}),
]

# Go seed: (project, module dir relative to the project ("" = root), versions, package, LICENSE?)
GO_SEED = [
    (44, "", ["v1.0.0", "v1.1.0"], "gomods", False),
    (44, "sub", ["v0.1.0"], "sub", False),
    (8, "", ["v1.0.0", "v1.2.0"], "gomods", True),
    (8, "Caps", ["v1.0.0"], "caps", True),
]


def go_module_path(project_path, subdir="", go_host=DEFAULT_GO_HOST):
    """Full module path of a seeded module, e.g. ``gitlab.example.com/pub/gomods/Caps``."""
    return f"{go_host}/{project_path}" + (f"/{subdir}" if subdir else "")


# =============================================================================================
# Small helpers: time, versions, names
# =============================================================================================

GUEST, REPORTER, DEVELOPER, MAINTAINER = 10, 20, 30, 40
INSTALLABLE = ("default", "hidden", "deprecated")
DISPLAYABLE = ("default", "error", "deprecated")
ALL_STATUSES = ("default", "hidden", "processing", "error", "pending_destruction", "deprecated")
PACKAGE_TYPES = (
    "maven npm conan nuget pypi composer generic golang debian rubygems helm terraform_module rpm ml_model".split()
)
NPM_DEP_TYPES = ("dependencies", "devDependencies", "bundleDependencies", "peerDependencies")
NPM_COPIED_KEYS = ("deprecated", "bin", "directories", "engines", "_hasShrinkwrap", "hasInstallScript")
NPM_STRIPPED_KEYS = ("readme", "readmeFilename", "licenseText", "contributors", "exports")
NPM_MAX_FILE_SIZE = 524_288_000
NPM_MAX_PACKAGE_JSON = 20_000
TAR_MTIME = 499_162_500  # what `npm pack` uses
PACKAGES_BASE_TIME = dt.datetime(2024, 3, 1, 10, 0, 0, tzinfo=dt.timezone.utc)
GO_BASE_TIME = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
MAX_BODY = 256 * 1024 * 1024

SEMVER_STRICT = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
NPM_NAME = re.compile(r"^(?:@([a-zA-Z0-9_.][a-zA-Z0-9_.\-]*)/)?[-+._a-zA-Z0-9]+$")
GO_VERSION = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[-.!a-z0-9]+)?(\+[-.!a-z0-9]+)?")
GO_PSEUDO = re.compile(
    r"^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)(\d{14})-([A-Za-z0-9]+)(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
# Gitlab::PathTraversal: `.`/`..` alone, leading `../`, trailing `/..`, inner `/../`, newline.
PATH_TRAVERSAL = re.compile(r"(\A\.{1,2}\Z|\A\.\.[/\\]|[/\\]\.\.\Z|[/\\]\.\.[/\\]|\n)")


def iso_ms(t):
    """2024-03-01T10:00:00.123Z"""
    if t is None:
        return None
    t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def go_time(t):
    """2024-01-02T03:04:05.000+00:00 (strftime('%Y-%m-%dT%H:%M:%S.%L%:z'))"""
    t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+00:00"


def now():
    return dt.datetime.now(dt.timezone.utc)


def semver_key(v):
    """Sort key approximating GitLab's VersionSorter / Go semver ordering."""
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.\-]+))?(?:\+.*)?$", v or "")
    if not m:
        return (-1, -1, -1, 0, ((1, v or ""),))
    pre = m.group(4)
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, parts)


def titleize(s):
    return " ".join(w[:1].upper() + w[1:] for w in s.split(" "))


def valid_file_path(name):
    """Grape `file_path: true` (Gitlab::PathTraversal + absolute-path check).

    INTERPRETATION: besides what the traversal regex rejects, any control character is
    rejected (the spec's `%0d%0a...` case), and the name is percent-decoded once more first,
    as Gitlab::Utils.decode_path does."""
    if not name:
        return False
    decoded = unquote(name)
    for candidate in (name, decoded):
        if PATH_TRAVERSAL.search(candidate) or candidate.startswith("/"):
            return False
        if any(ord(c) < 32 or ord(c) == 127 for c in candidate):
            return False
    return True


def npm_scope(name):
    m = re.match(r"^@([^/]+)/", name or "")
    return m.group(1) if m else None


def seeded_bytes(seed_text, n):
    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "big")
    return random.Random(seed).randbytes(n)


def hashes(data):
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def to_query(params):
    """Rails Hash#to_query: keys sorted, CGI-escaped."""
    return "&".join(f"{quote_plus(str(k))}={quote_plus(str(v))}" for k, v in sorted(params.items()))


# =============================================================================================
# Artifact builders (deterministic bytes)
# =============================================================================================


def build_npm_tarball(name, version, dependencies, padding=0):
    """A real npm tarball: package/package.json + package/index.js (+ package/padding.bin)."""
    pj = {"name": name, "version": version, "description": f"{name} (fake GitLab fixture)", "main": "index.js",
          "license": "MIT"}
    if dependencies:
        pj["dependencies"] = dict(dependencies)
    files = {
        "package/package.json": (json.dumps(pj, indent=2) + "\n").encode(),
        "package/index.js": f'module.exports = "{name}@{version}";\n'.encode(),
    }
    if padding and padding > 0:
        files["package/padding.bin"] = seeded_bytes(f"{name}@{version}", int(padding))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = TAR_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def build_zip(entries, date_time=(2024, 1, 2, 3, 4, 4)):
    """Deflated zip with sorted entries and a fixed timestamp."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(entries):
            info = zipfile.ZipInfo(path, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, entries[path])
    return buf.getvalue()


def go_files(module_path, version, package, license_file):
    files = {
        "go.mod": f"module {module_path}\n\ngo 1.19\n".encode(),
        "hello.go": f'package {package}\n\nfunc Hello() string {{ return "{version}" }}\n'.encode(),
    }
    if license_file:
        files["LICENSE"] = b"MIT License\n\nCopyright (c) 2024 Fake GitLab fixtures\n"
    return files


def go_zip(module_path, version, files, when):
    date_time = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second // 2 * 2)
    return build_zip({f"{module_path}@{version}/{rel}": data for rel, data in files.items()}, date_time)


# =============================================================================================
# Data model
# =============================================================================================


class Group:
    def __init__(self, gid, full_path, visibility):
        self.id, self.full_path, self.visibility = gid, full_path, visibility

    @property
    def public(self):
        return self.visibility == "public"


class Project:
    def __init__(self, pid, full_path, visibility):
        self.id, self.full_path, self.visibility = pid, full_path, visibility

    @property
    def public(self):
        return self.visibility == "public"

    @property
    def namespace_path(self):
        return self.full_path.rsplit("/", 1)[0]

    @property
    def root_path(self):
        return self.full_path.split("/", 1)[0]


class Token:
    def __init__(self, value, kind, user=None, project_id=None, state="active", write=False):
        self.value, self.kind, self.user = value, kind, user  # kind: pat, oauth, job, deploy
        self.project_id, self.state, self.write = project_id, state, write


class Caller:
    def __init__(self, kind, user=None, project_id=None, write=False):
        self.kind, self.user, self.project_id, self.write = kind, user, project_id, write

    @property
    def anonymous(self):
        return self.kind == "anon"

    def describe(self):
        return {"kind": self.kind, "user": self.user, "project_id": self.project_id}


ANON = Caller("anon")


class PackageFile:
    def __init__(self, fid, package_id, file_name, data, created_at, sha1=None):
        self.id, self.package_id, self.file_name, self.data = fid, package_id, file_name, data
        self.created_at, self.status = created_at, "default"
        h = hashes(data)
        self.md5, self.sha256 = h["md5"], h["sha256"]
        self.sha1 = sha1 if sha1 else h["sha1"]


class Pipeline:
    def __init__(self, pid, iid, project, user, when):
        self.id, self.iid, self.project_id, self.user = pid, iid, project.id, user
        self.sha = hashlib.sha1(f"pipeline-{pid}".encode()).hexdigest()
        self.created_at, self.updated_at = when, when + dt.timedelta(minutes=3)
        self.project_path = project.full_path


class Package:
    def __init__(self, pkid, project_id, name, version, package_type, status, created_at):
        self.id, self.project_id, self.name, self.version = pkid, project_id, name, version
        self.package_type, self.status = package_type, status
        self.created_at = self.updated_at = created_at
        self.last_downloaded_at = created_at + dt.timedelta(days=1, minutes=17)
        self.files: list[PackageFile] = []
        self.pipelines: list[Pipeline] = []
        self.package_json: dict = {}  # npm: stored version object
        self.deps: dict = {}  # npm: dependency type -> {name: range}
        self.creator_id = None

    def installable_files(self):
        return [f for f in self.files if f.status == "default"]


class Tag:
    def __init__(self, tid, package, name, seq, when):
        self.id, self.package_id, self.project_id, self.name = tid, package.id, package.project_id, name
        self.seq, self.created_at, self.updated_at = seq, when, when


class GoVersion:
    def __init__(self, project_id, subdir, version, when, files):
        self.project_id, self.subdir, self.version, self.time, self.files = project_id, subdir, version, when, files
        self.commit = hashlib.sha1(f"{project_id}:{subdir}:{version}".encode()).hexdigest()


USERS = {  # username -> (id, display name)
    "alice": (101, "Alice Developer"),
    "maint": (102, "Max Maintainer"),
    "guest": (103, "Gus Guest"),
    "bob": (104, "Bob Nobody"),
    "eve": (105, "Eve Expired"),
    "rita": (106, "Rita Revoked"),
}


class World:
    """Everything GitLab "knows". All access happens under Fake.lock."""

    def __init__(self, ext_url, go_host):
        self.ext_url, self.go_host = ext_url, go_host
        self.groups: dict[int, Group] = {}
        self.projects: dict[int, Project] = {}
        self.moved: dict[str, int] = {}  # old full path (lower) -> project id
        self.tokens: dict[str, Token] = {}
        self.members: dict[tuple[str, int], int] = {}
        self.packages: dict[int, Package] = {}
        self.tags: list[Tag] = []
        self.go: dict[int, dict[str, dict[str, GoVersion]]] = {}
        self._ids = {"package": 0, "file": 0, "pipeline": 5000, "tag": 0, "seq": 0, "go": 0}
        self._iids: dict[int, int] = {}
        self.seeding = False
        self._seed()

    # ---- ids -------------------------------------------------------------------------------

    def next_id(self, kind):
        self._ids[kind] += 1
        return self._ids[kind]

    def package_time(self, pkid):
        return PACKAGES_BASE_TIME + dt.timedelta(hours=pkid, milliseconds=(pkid * 137) % 1000)

    # ---- seed ------------------------------------------------------------------------------

    def _seed(self):
        for gid, path, vis in [(10, "acme", "private"), (11, "acme/sub", "private"), (20, "pub", "public")]:
            self.groups[gid] = Group(gid, path, vis)
        for pid, path, vis in [(42, "acme/web", "private"), (43, "acme/sub/tools", "private"),
                               (7, "pub/lib", "public"), (44, "acme/gomods", "private"),
                               (8, "pub/gomods", "public")]:
            self.projects[pid] = Project(pid, path, vis)
        for user, roles in [("alice", {42: DEVELOPER, 43: DEVELOPER, 44: DEVELOPER}),
                            ("maint", {42: MAINTAINER, 43: MAINTAINER, 44: MAINTAINER}),
                            ("guest", {42: GUEST}), ("rita", {42: DEVELOPER})]:
            for pid, role in roles.items():
                self.members[(user, pid)] = role
        for tok in [Token(ALICE_PAT, "pat", "alice"), Token(MAINT_PAT, "pat", "maint"),
                    Token(GUEST_PAT, "pat", "guest"), Token(BOB_PAT, "pat", "bob"),
                    Token(EXPIRED_PAT, "pat", "eve", state="expired"), Token(REVOKED_PAT, "pat", "rita"),
                    Token(OAUTH_ALICE, "oauth", "alice"),
                    Token(JOB_RUNNING, "job", project_id=42), Token(JOB_FINISHED, "job", project_id=42,
                                                                    state="finished"),
                    Token(DEPLOY_READ, "deploy", project_id=42), Token(DEPLOY_WRITE, "deploy", project_id=42,
                                                                       write=True)]:
            self.tokens[tok.value] = tok

        self.seeding = True
        # Ids follow this order: project 42's npm packages, its other packages, then the rest.
        for pid, name, version, deps, tags, status, extra in [r for r in NPM_SEED if r[0] == 42]:
            self.add_npm(pid, name, version, deps, tags, status=status, extra=extra)
        self._seed_other_packages()
        for pid, name, version, deps, tags, status, extra in [r for r in NPM_SEED if r[0] != 42]:
            self.add_npm(pid, name, version, deps, tags, status=status, extra=extra)
        for pid, subdir, versions, package, lic in GO_SEED:
            for v in versions:
                self.add_go(pid, subdir, v, package=package, license_file=lic)
        self._seed_pipelines()
        self.seeding = False

    def _seed_other_packages(self):
        tool = self.add_package(42, "bin-tool", "1.0.0", "generic")
        self.add_file(tool, "tool-linux.bin", seeded_bytes("bin-tool/tool-linux.bin", 4096))
        self.add_file(tool, "README.txt", b"bin-tool 1.0.0: a seeded-random binary for the fake GitLab\n")
        jar = build_zip({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\r\nCreated-By: fake-gitlab\r\n\r\n",
                         "com/acme/lib/Lib.class": seeded_bytes("lib.class", 300)})
        mvn = self.add_package(42, "com/acme/lib", "1.0", "maven")
        self.add_file(mvn, "lib-1.0.jar", jar)
        self.add_file(mvn, "lib-1.0.pom", b"<project><groupId>com.acme</groupId><artifactId>lib</artifactId>"
                                          b"<version>1.0</version></project>\n")
        py = self.add_package(42, "acme-py", "0.1", "pypi")
        self.add_file(py, "acme_py-0.1-py3-none-any.whl",
                      build_zip({"acme_py/__init__.py": b"VERSION = '0.1'\n",
                                 "acme_py-0.1.dist-info/METADATA": b"Name: acme-py\nVersion: 0.1\n"}))
        tf = self.add_package(42, "vpc/aws", "1.0.0", "terraform_module")
        self.add_file(tf, "vpc-aws-1.0.0.tgz", gzip.compress(b"terraform module", mtime=0))
        # Versionless (GitLab's maven-metadata.xml holder of a SNAPSHOT line: version NULL).
        vl = self.add_package(42, "com/acme/lib", None, "maven")
        self.add_file(vl, "maven-metadata.xml", b"<metadata><groupId>com.acme</groupId></metadata>\n")

    def _seed_pipelines(self):
        users = ["alice", "maint"]
        for pkg in sorted(self.packages.values(), key=lambda p: p.id):
            n = 25 if pkg.name == "bin-tool" else pkg.id % 4
            for i in range(n):
                self.add_pipeline(pkg, users[i % 2], pkg.created_at - dt.timedelta(minutes=30 - i))

    # ---- mutations -------------------------------------------------------------------------

    def add_package(self, project_id, name, version, package_type, status="default"):
        pkid = self.next_id("package")
        pkg = Package(pkid, project_id, name, version, package_type, status, self.package_time(pkid))
        self.packages[pkid] = pkg
        return pkg

    def add_file(self, pkg, file_name, data, sha1=None):
        f = PackageFile(self.next_id("file"), pkg.id, file_name, data, pkg.created_at, sha1)
        pkg.files.append(f)
        return f

    def add_pipeline(self, pkg, user, when):
        project = self.projects[pkg.project_id]
        self._iids[project.id] = self._iids.get(project.id, 0) + 1
        pl = Pipeline(self.next_id("pipeline"), self._iids[project.id], project, user, when)
        pkg.pipelines.append(pl)
        return pl

    def add_npm(self, project_id, name, version, deps=None, tags=(), status="default", extra=None, padding=0):
        deps = dict(deps or {})
        pkg = self.add_package(project_id, name, version, "npm", status)
        data = build_npm_tarball(name, version, deps, padding)
        pkg.package_json = {"name": name, "version": version, "main": "index.js", "license": "MIT"}
        if deps:
            pkg.package_json["dependencies"] = deps
            pkg.deps["dependencies"] = deps
        pkg.package_json.update(extra or {})
        self.add_file(pkg, f"{name}-{version}.tgz", data)
        for tag in tags:
            self.set_tag(pkg, tag)
        return pkg

    def set_tag(self, pkg, tag_name):
        """CreateTagService: move an existing tag of that name (same project + package name)."""
        seq = self.next_id("seq")
        when = pkg.created_at + dt.timedelta(minutes=1) if self.seeding else now()
        for t in self.tags:
            other = self.packages.get(t.package_id)
            if (t.name == tag_name and other and other.project_id == pkg.project_id
                    and other.name == pkg.name and other.package_type == pkg.package_type):
                t.package_id, t.seq, t.updated_at = pkg.id, seq, when
                return t
        t = Tag(self.next_id("tag"), pkg, tag_name, seq, when)
        self.tags.append(t)
        return t

    def remove_package(self, pkg):
        self.packages.pop(pkg.id, None)
        self.tags = [t for t in self.tags if t.package_id != pkg.id]

    def add_go(self, project_id, subdir, version, package=None, license_file=False, when=None):
        project = self.projects[project_id]
        module_path = go_module_path(project.full_path, subdir, self.go_host)
        i = self.next_id("go") - 1
        when = when or GO_BASE_TIME + dt.timedelta(days=i, hours=i)
        package = package or (subdir.rsplit("/", 1)[-1].lower() if subdir else project.full_path.rsplit("/", 1)[-1])
        package = re.sub(r"[^a-z0-9_]", "", package.lower()) or "mod"
        gv = GoVersion(project_id, subdir, version, when, go_files(module_path, version, package, license_file))
        self.go.setdefault(project_id, {}).setdefault(subdir, {})[version] = gv
        pkg = self.add_package(project_id, module_path, version, "golang")
        self.add_file(pkg, f"{version}.mod", gv.files["go.mod"])
        self.add_file(pkg, f"{version}.zip", go_zip(module_path, version, gv.files, when))
        return gv

    # ---- lookups ---------------------------------------------------------------------------

    def find_project(self, ident):
        """(project, moved) by numeric id or full path (case-insensitive), following renames."""
        ident = (ident or "").strip()
        if ident.isdigit():
            return self.projects.get(int(ident)), False
        low = ident.lower()
        for p in self.projects.values():
            if p.full_path.lower() == low:
                return p, False
        if low in self.moved:
            return self.projects.get(self.moved[low]), True
        return None, False

    def find_group(self, ident):
        ident = (ident or "").strip()
        if ident.isdigit():
            return self.groups.get(int(ident))
        low = ident.lower()
        return next((g for g in self.groups.values() if g.full_path.lower() == low), None)

    def top_level_namespace(self, path):
        if not path:
            return None
        low = path.lower()
        return next((g for g in self.groups.values() if "/" not in g.full_path and g.full_path.lower() == low), None)

    def group_projects(self, group, include_subgroups=True):
        out = []
        for p in self.projects.values():
            ns = p.namespace_path
            if ns == group.full_path or (include_subgroups and ns.startswith(group.full_path + "/")):
                out.append(p)
        return sorted(out, key=lambda p: p.id)

    def npm_packages(self, projects, name):
        """PackageFinder: npm, exact name, installable, last record of each version."""
        pids = {p.id for p in projects}
        found = [p for p in self.packages.values()
                 if p.project_id in pids and p.package_type == "npm" and p.name == name and p.status in INSTALLABLE]
        last = {}
        for p in sorted(found, key=lambda p: p.id):
            last[p.version] = p
        return sorted(last.values(), key=lambda p: p.id)

    def tags_of(self, pkg):
        return sorted((t for t in self.tags if t.package_id == pkg.id), key=lambda t: t.id)

    def role(self, caller, project):
        if caller.kind == "user":
            return self.members.get((caller.user, project.id), 0)
        if caller.kind == "job":
            return DEVELOPER if caller.project_id == project.id else 0
        return 0

    # ---- permissions -----------------------------------------------------------------------

    def can_see_project(self, caller, project):
        if project is None:
            return False
        if project.public:
            return True
        if caller.kind in ("job", "deploy"):
            return caller.project_id == project.id
        return self.role(caller, project) > 0

    def can_read_package(self, caller, project):
        if project.public:
            return True
        if caller.kind == "deploy":
            return caller.project_id == project.id
        return self.role(caller, project) >= GUEST  # allow_guest_plus_roles_to_pull_packages

    def can_create_package(self, caller, project):
        if caller.kind == "deploy":
            return caller.project_id == project.id and caller.write
        return self.role(caller, project) >= DEVELOPER

    def can_destroy_package(self, caller, project):
        return caller.kind == "user" and self.role(caller, project) >= MAINTAINER

    def can_read_pipelines(self, caller, project):
        return project.public or self.role(caller, project) >= REPORTER

    def can_read_group(self, caller, group):
        """Public group, or the caller has a role in (or a job of) a project below it.

        INTERPRETATION: project deploy tokens never read a private group."""
        if group is None:
            return False
        if group.public:
            return True
        if caller.kind in ("user", "job"):
            return any(self.role(caller, p) > 0 for p in self.group_projects(group))
        return False


# =============================================================================================
# HTTP plumbing: responses and GitLab error bodies
# =============================================================================================


class Resp:
    def __init__(self, status, body=b"", content_type="application/json", headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.content_type = content_type
        self.headers = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])


class ApiError(Exception):
    def __init__(self, resp):
        super().__init__(resp.status)
        self.resp = resp


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"))


def json_resp(status, obj, headers=None):
    return Resp(status, jdump(obj), "application/json", headers)


def fail(status, obj, headers=None):
    raise ApiError(json_resp(status, obj, headers))


def unauthorized():
    fail(401, {"message": "401 Unauthorized"})


def forbidden(reason=None):
    fail(403, {"message": "403 Forbidden" + (f" - {reason}" if reason else "")})


def npm_not_found(thing):
    """Structured form of the npm helper's not_found! override."""
    fail(404, {"message": f"404 {titleize(thing)} Not Found", "error": f"{thing} not found"})


def plain_not_found(thing):
    fail(404, {"message": f"404 {thing} Not Found"})


def record_not_found():
    fail(404, {"message": "404 Not found"})


def structured(status, text):
    fail(status, {"message": text, "error": text})


def catch_all():
    return json_resp(404, {"error": "404 Not Found"})


def redirect(status, location, body=None, content_type="text/plain"):
    body = body if body is not None else f"This resource has been moved temporarily to {location}."
    return Resp(status, body, content_type, {"Location": location})


def invalid_token(reason):
    desc = f"Token {reason}. You can either do re-authorization or token refresh."
    fail(401, {"error": "invalid_token", "error_description": desc},
         {"WWW-Authenticate": f'Bearer realm="The API", error="invalid_token", error_description="{desc}"'})


class Ctx:
    """One API request."""

    def __init__(self, fake, method, path, query_string, headers, body):
        self.fake, self.world = fake, fake.world
        self.method = "GET" if method == "HEAD" else method
        self.path, self.query_string, self.headers, self.body = path, query_string, headers, body
        self.query = {}
        for k, v in parse_qsl(query_string, keep_blank_values=True):
            self.query[k] = v  # Rack: last value wins
        self.caller = ANON

    def header(self, name):
        v = self.headers.get(name)
        return v.strip() if v is not None else None

    def json_body(self):
        try:
            return json.loads(self.body.decode("utf-8")) if self.body else None
        except (UnicodeDecodeError, ValueError):
            raise ValueError("invalid json")


# =============================================================================================
# Authentication (API.md §4)
# =============================================================================================

# Which credential kinds each route family accepts.
FAMILIES = {
    "npm": {"deploy": True, "job": True, "basic_pat": False},
    "go": {"deploy": False, "job": True, "basic_pat": True},
    "packages": {"deploy": False, "job": True, "basic_pat": False},  # project Packages API, files, pipelines
    "plain": {"deploy": False, "job": False, "basic_pat": False},  # group list, /projects/:id, /groups/:id
}


def _basic(ctx):
    auth = ctx.header("Authorization") or ""
    scheme, _, val = auth.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, pw = base64.b64decode(val.strip(), validate=False).decode("utf-8", "replace").partition(":")
        return user, pw
    except (binascii.Error, ValueError):
        return None


def _bearer(ctx):
    auth = ctx.header("Authorization") or ""
    scheme, _, val = auth.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return val.strip() or None


def _user_caller(tok):
    if tok.state == "expired":
        invalid_token("is expired")
    if tok.state == "revoked":
        invalid_token("was revoked")
    return Caller("user", user=tok.user)


def _job_caller(tok):
    if tok.state != "active":
        unauthorized()
    return Caller("job", project_id=tok.project_id)


def _deploy_caller(tok):
    return Caller("deploy", project_id=tok.project_id, write=tok.write)


def authenticate(ctx, family):
    """Caller from the request, in GitLab's order: deploy token, Bearer job token, access
    token (PRIVATE-TOKEN / private_token / Bearer: PAT or OAuth), Job-Token / job_token, Basic PAT.

    A carrier a route does not accept is ignored (anonymous); an unknown token in an accepted
    carrier is 401."""
    f, tokens = FAMILIES[family], ctx.world.tokens
    bearer, basic = _bearer(ctx), _basic(ctx)
    if f["deploy"]:
        v = ctx.header("Deploy-Token")
        if v:
            tok = tokens.get(v)
            if tok and tok.kind == "deploy":
                return _deploy_caller(tok)
            unauthorized()
        if basic:
            # INTERPRETATION: Basic on npm routes only carries deploy tokens; any other
            # password (even a valid PAT) is ignored, so the caller stays anonymous.
            tok = tokens.get(basic[1])
            if tok and tok.kind == "deploy":
                return _deploy_caller(tok)
        if bearer:
            tok = tokens.get(bearer)
            if tok and tok.kind == "deploy":
                return _deploy_caller(tok)
    if f["job"] and bearer:
        tok = tokens.get(bearer)
        if tok and tok.kind == "job":
            return _job_caller(tok)
    pat = ctx.header("Private-Token") or ctx.query.get("private_token") or None
    if pat:
        tok = tokens.get(pat)
        if tok and tok.kind == "pat":
            return _user_caller(tok)
        unauthorized()
    if bearer:
        tok = tokens.get(bearer)
        if tok and tok.kind in ("pat", "oauth"):
            return _user_caller(tok)
        unauthorized()
    if f["job"]:
        v = ctx.header("Job-Token") or ctx.query.get("job_token") or None
        if v:
            tok = tokens.get(v)
            if tok and tok.kind == "job":
                return _job_caller(tok)
            unauthorized()
    if f["basic_pat"] and basic:
        tok = tokens.get(basic[1])
        if tok and tok.kind == "pat":
            return _user_caller(tok)
        # INTERPRETATION (API.md §2 UNCONFIRMED): an unknown Basic password is treated as
        # anonymous, so a private project then answers 401.
    return ANON


def moved_project(ctx, project):
    """Old path of a renamed project: GET -> 301 to the id-based URL, else 405."""
    if ctx.method != "GET":
        fail(405, {"message": "Non GET methods are not allowed for moved projects"})
    parts = ctx.path.split("/")
    parts[4] = str(project.id)  # ['', 'api', 'v4', 'projects', ':id', ...]
    location = ctx.world.ext_url + "/".join(parts) + (f"?{ctx.query_string}" if ctx.query_string else "")
    raise ApiError(redirect(301, location, body=""))


def find_project_bang(ctx, ident, non_public_401, structured_404):
    """find_project!: visible project, else 401 (anonymous, authenticate_non_public) or 404."""
    project, moved = ctx.world.find_project(ident)
    if project is not None and ctx.world.can_see_project(ctx.caller, project):
        if moved:
            moved_project(ctx, project)
        return project
    if ctx.caller.anonymous and non_public_401:
        unauthorized()
    if structured_404:
        npm_not_found("Project")
    plain_not_found("Project")


def authorize_read_package(ctx, project):
    if not ctx.world.can_read_package(ctx.caller, project):
        forbidden()


def authorize_create_package(ctx, project):
    if not ctx.world.can_create_package(ctx.caller, project):
        forbidden()


def authorize_destroy_package(ctx, project):
    if not ctx.world.can_destroy_package(ctx.caller, project):
        forbidden()


# =============================================================================================
# npm (API.md §1)
# =============================================================================================


def npm_tarball_url(world, pkg, pfile):
    return f"{world.ext_url}/api/v4/projects/{pkg.project_id}/packages/npm/{pkg.name}/-/{pfile.file_name}"


def npm_document(world, name, packages, only_dist_tags=False):
    """GenerateMetadataService: {name, versions, dist-tags}."""
    versions, used = {}, []
    for pkg in sorted(packages, key=lambda p: p.id):
        files = pkg.installable_files()
        if not files:
            continue
        pfile = files[-1]
        v = {"name": pkg.name, "version": pkg.version,
             "dist": {"shasum": pfile.sha1, "tarball": npm_tarball_url(world, pkg, pfile)}}
        for dep_type in NPM_DEP_TYPES:
            if pkg.deps.get(dep_type):
                v[dep_type] = dict(pkg.deps[dep_type])
        for key in NPM_COPIED_KEYS:
            if key in pkg.package_json and pkg.package_json[key] not in (None, "", {}, []):
                v[key] = pkg.package_json[key]
        versions[pkg.version] = v
        used.append(pkg)
    tags = {}
    for pkg in used:
        for t in world.tags_of(pkg):
            if t.name not in tags or t.seq > tags[t.name][0]:
                tags[t.name] = (t.seq, pkg.version)
    dist_tags = {k: v for k, (_, v) in sorted(tags.items(), key=lambda kv: kv[1][0])}
    if "latest" not in dist_tags and versions:
        dist_tags["latest"] = max(versions, key=semver_key)
    if only_dist_tags:
        return dist_tags
    return {"name": name, "versions": versions, "dist-tags": dist_tags}


def npm_forward(ctx, name):
    return redirect(302, f"{ctx.fake.public_registry}/{name}")


def npm_present_metadata(ctx, scope, name, packages):
    doc = npm_document(ctx.world, name, packages)
    mode = ctx.fake.settings.get("metadata_cache", "off")
    if scope == "project" and mode in ("file", "redirect"):
        # Packages::Npm::MetadataCache served through present_carrierwave_file!.
        data = json.dumps(doc).encode()
        if mode == "redirect":
            return redirect(302, ctx.fake.objstore.put(data, "metadata.json"), body="")
        return Resp(200, data, "application/octet-stream",
                    {"Content-Disposition": 'attachment; filename="metadata.json"'})
    return json_resp(200, doc)


def check_group_access(ctx, group, non_public):
    if ctx.world.can_read_group(ctx.caller, group):
        return group
    if ctx.caller.anonymous and non_public:
        unauthorized()
    npm_not_found("Group")


def npm_namespace(ctx, scope, scope_id, name, non_public):
    """group_or_namespace for {G} (access-checked) and {I} (scope -> top-level namespace)."""
    if scope == "group":
        return check_group_access(ctx, ctx.world.find_group(unquote(scope_id)), non_public)
    return ctx.world.top_level_namespace(npm_scope(name))


def npm_newest_project(ctx, namespace, name):
    """project_id_or_nil at {G}/{I}: project holding the newest matching package."""
    if namespace is None or not name:
        return None
    pkgs = ctx.world.npm_packages(ctx.world.group_projects(namespace), name)
    return ctx.world.projects[max(pkgs, key=lambda p: p.id).project_id] if pkgs else None


def npm_scope_project(ctx, scope, scope_id, name, non_public):
    """The `project` helper: at {P} user_project, at {G}/{I} the newest project (else 404)."""
    if scope == "project":
        return find_project_bang(ctx, unquote(scope_id), non_public, True)
    ns = npm_namespace(ctx, scope, scope_id, name, non_public)
    target = npm_newest_project(ctx, ns, name)
    if target is None:
        npm_not_found("Project")
    return find_project_bang(ctx, str(target.id), non_public, True)


def npm_metadata(ctx, scope, scope_id, raw_name):
    world, name = ctx.world, unquote(raw_name)
    if not valid_file_path(name):
        fail(400, {"error": "package_name should be a valid file path"})
    forwarding = ctx.fake.settings["npm_forwarding"]
    multi = ctx.fake.settings["multiple_projects"] and scope != "project"
    if scope == "project":
        target, moved = world.find_project(unquote(scope_id))
        if moved and world.can_see_project(ctx.caller, target):
            moved_project(ctx, target)
        packages = world.npm_packages([target], name) if target else []
        if (target is None or not packages) and forwarding:
            return npm_forward(ctx, name)
        project = find_project_bang(ctx, unquote(scope_id), True, True)
        authorize_read_package(ctx, project)
        if not packages:
            npm_not_found("Packages")
        return npm_present_metadata(ctx, scope, name, packages)

    ns = npm_namespace(ctx, scope, scope_id, name, True)
    target = npm_newest_project(ctx, ns, name)
    if multi:
        packages = world.npm_packages(world.group_projects(ns), name) if ns else []
    else:
        packages = world.npm_packages([target], name) if target else []
    if (target is None or not packages) and forwarding:
        return npm_forward(ctx, name)
    if multi:
        visible = [p for p in packages if world.can_read_package(ctx.caller, world.projects[p.project_id])]
        if packages and not visible:
            if ctx.caller.anonymous:
                unauthorized()
            forbidden()
        packages = visible
    else:
        if target is None:
            npm_not_found("Project")
        project = find_project_bang(ctx, str(target.id), True, True)
        authorize_read_package(ctx, project)
    if not packages:
        npm_not_found("Packages")
    return npm_present_metadata(ctx, scope, name, packages)


def present_file(ctx, pfile, pkg):
    """present_package_file!: bytes with Content-Disposition, or a 302 to object storage."""
    pkg.last_downloaded_at = now()
    filename = pfile.file_name.rsplit("/", 1)[-1]  # INTERPRETATION: basename of the stored name
    if ctx.fake.settings["tarball_redirect"]:
        return redirect(302, ctx.fake.objstore.put(pfile.data, filename), body="")
    return Resp(200, pfile.data, "application/octet-stream",
                {"Content-Disposition": f'attachment; filename="{filename}"'})


def npm_tarball(ctx, scope_id, raw_name, raw_file):
    project = find_project_bang(ctx, unquote(scope_id), False, True)
    authorize_read_package(ctx, project)
    name, file_name = unquote(raw_name), unquote(raw_file)
    candidates = [p for p in ctx.world.packages.values()
                  if p.project_id == project.id and p.package_type == "npm" and p.name == name
                  and p.status not in ("pending_destruction", "processing")
                  and any(f.file_name == file_name for f in p.files)]
    if not candidates:
        npm_not_found("Package")
    pkg = max(candidates, key=lambda p: p.id)
    files = [f for f in pkg.installable_files() if f.file_name == file_name]
    if not files:
        npm_not_found("Package")
    return present_file(ctx, files[-1], pkg)


def npm_publish(ctx, scope_id, raw_name):
    world = ctx.world
    project = find_project_bang(ctx, unquote(scope_id), False, True)
    url_name = unquote(raw_name)
    if ctx.header("Npm-Command") == "deprecate":
        authorize_destroy_package(ctx, project)
        return npm_deprecate(ctx, project, url_name)
    authorize_create_package(ctx, project)
    # INTERPRETATION: authorization before body checks, as on the Workhorse upload path.
    try:
        body = ctx.json_body()
    except ValueError:
        structured(400, "Invalid json")
    if not isinstance(body, dict):
        structured(400, "Invalid json")
    versions = body.get("versions")
    if not isinstance(versions, dict):
        structured(400, "Versions key is missing from the JSON upload")
    name = body.get("name") if isinstance(body.get("name"), str) else url_name  # GitLab stores body's name
    version = next(iter(versions), "")
    dist_tags = body.get("dist-tags")
    tag = next(iter(dist_tags), None) if isinstance(dist_tags, dict) and dist_tags else "latest"
    if not version:
        structured(400, "Version is empty.")
    attachments = body.get("_attachments") if isinstance(body.get("_attachments"), dict) else {}
    attachment = attachments.get(f"{name}-{version}.tgz")
    data_b64 = attachment.get("data") if isinstance(attachment, dict) else None
    if not data_b64 or not isinstance(data_b64, str):
        structured(400, "Attachment data is empty.")
    def exists(pids):
        return any(p.project_id in pids and p.package_type == "npm" and p.name == name and p.version == version
                   and p.status != "pending_destruction" for p in world.packages.values())

    if exists({project.id}):
        structured(403, "Package already exists.")
    # Size from the base64 length (client-supplied `length` ignored).
    if len(data_b64) * 3 // 4 > NPM_MAX_FILE_SIZE:
        structured(400, "File is too large.")
    if not NPM_NAME.match(name):
        structured(400, "Validation failed: Name should be a valid NPM package name: "
                        "https://github.com/npm/validate-npm-package-name#naming-rules.")
    if not SEMVER_STRICT.match(version):
        structured(400, "Validation failed: Version is invalid")  # INTERPRETATION: message text
    scope, root = npm_scope(name), world.top_level_namespace(project.root_path)
    if scope and root and scope.lower() == root.full_path.lower():
        # Naming convention followed: the version must be unique in the whole root namespace.
        if exists({p.id for p in world.group_projects(root)} - {project.id}):
            structured(400, "Validation failed: Package already exists")
    vobj = versions.get(version) if isinstance(versions.get(version), dict) else {}
    package_json = {k: v for k, v in vobj.items() if k not in NPM_STRIPPED_KEYS}
    scripts = package_json.get("scripts") if isinstance(package_json.get("scripts"), dict) else {}
    if any(k in scripts for k in ("preinstall", "install", "postinstall")):
        package_json["hasInstallScript"] = True
    if len(jdump(package_json)) >= NPM_MAX_PACKAGE_JSON:
        structured(400, "Validation failed: Package json structure is too large. "
                        f"Maximum size is {NPM_MAX_PACKAGE_JSON} characters")
    try:
        padded = data_b64.strip() + "=" * (-len(data_b64.strip()) % 4)
        data = base64.b64decode(padded, validate=False)
    except (binascii.Error, ValueError):
        structured(400, "Attachment data is empty.")
    dist = vobj.get("dist") if isinstance(vobj.get("dist"), dict) else {}
    sha1 = dist.get("shasum") if isinstance(dist.get("shasum"), str) else None
    pkg = world.add_package(project.id, name, version, "npm")
    pkg.created_at = pkg.updated_at = now()
    pkg.last_downloaded_at = None
    pkg.creator_id = USERS.get(ctx.caller.user, (None,))[0]
    pkg.package_json = package_json
    pkg.deps = {t: dict(vobj[t]) for t in NPM_DEP_TYPES if isinstance(vobj.get(t), dict) and vobj[t]}
    pfile = world.add_file(pkg, f"{name}-{version}.tgz", data, sha1=sha1)
    pfile.created_at = pkg.created_at
    if tag:
        world.set_tag(pkg, tag)
    # INTERPRETATION: the created record as Grape renders the model (field list UNCONFIRMED).
    return json_resp(200, {"id": pkg.id, "project_id": pkg.project_id, "created_at": iso_ms(pkg.created_at),
                           "updated_at": iso_ms(pkg.updated_at), "name": pkg.name, "version": pkg.version,
                           "package_type": "npm", "creator_id": pkg.creator_id, "status": pkg.status,
                           "status_message": None})


def npm_deprecate(ctx, project, name):
    try:
        body = ctx.json_body()
    except ValueError:
        structured(400, "Invalid json")
    versions = body.get("versions") if isinstance(body, dict) else None
    if not isinstance(versions, dict):
        fail(400, {"error": "versions is missing"})
    wanted = {v: obj["deprecated"] for v, obj in versions.items() if isinstance(obj, dict) and "deprecated" in obj}
    pkgs = [p for p in ctx.world.npm_packages([project], name) if p.version in wanted]
    if not pkgs:
        fail(400, {"message": '400 Bad request - "package versions to deprecate" not given',
                   "error": '"package versions to deprecate" not given'})
    for pkg in pkgs:
        reason = wanted[pkg.version]
        if reason:
            pkg.package_json["deprecated"] = str(reason)
            pkg.status = "deprecated"
        else:
            pkg.package_json.pop("deprecated", None)
            pkg.status = "default"
        pkg.updated_at = now()
    return Resp(200, "null", "application/json")  # INTERPRETATION: the route block returns nil


def npm_dist_tags(ctx, scope, scope_id, raw_name, raw_tag):
    world, name = ctx.world, unquote(raw_name)
    tag = unquote(raw_tag) if raw_tag is not None else None
    if not name:
        fail(400, {"message": '400 Bad request - "Package Name" not given', "error": '"Package Name" not given'})
    if ctx.method == "GET":
        project = npm_scope_project(ctx, scope, scope_id, name, True)
        authorize_read_package(ctx, project)
        packages = world.npm_packages([project], name)
        if not packages:
            npm_not_found("Package")
        return json_resp(200, npm_document(world, name, packages, only_dist_tags=True))
    if ctx.method == "PUT":
        try:
            version = ctx.json_body()
        except ValueError:
            version = None
        if version is not None and not isinstance(version, str):
            version = str(version)
        if not version:
            fail(400, {"message": '400 Bad request - "Version" not given', "error": '"Version" not given'})
        if not tag:
            fail(400, {"message": '400 Bad request - "Tag" not given', "error": '"Tag" not given'})
        project = npm_scope_project(ctx, scope, scope_id, name, False)
        authorize_create_package(ctx, project)
        pkgs = [p for p in world.npm_packages([project], name) if p.version == version]
        if not pkgs:
            npm_not_found("Package")
        world.set_tag(pkgs[-1], tag)
        pkgs[-1].updated_at = now()
        return Resp(204, b"", "application/json")
    # DELETE
    project = npm_scope_project(ctx, scope, scope_id, name, False)
    authorize_destroy_package(ctx, project)
    pkg_ids = {p.id for p in world.packages.values()
               if p.project_id == project.id and p.package_type == "npm" and p.name == name}
    found = [t for t in world.tags if t.package_id in pkg_ids and t.name == tag]
    if not found:
        npm_not_found("Package tag")
    world.tags = [t for t in world.tags if t not in found]
    return Resp(204, b"", "application/json")


def npm_audit(ctx, scope, scope_id, which):
    if scope == "group":
        npm_namespace(ctx, scope, scope_id, None, False)  # project_id_or_nil checks group access first
    # The forwarding setting of the target project (or the instance): one switch in this fake.
    if ctx.fake.settings["npm_forwarding"]:
        posted = {}
        try:
            raw = ctx.body
            if (ctx.header("Content-Encoding") or "").lower() == "gzip":
                raw = gzip.decompress(raw)
            parsed = json.loads(raw.decode("utf-8")) if raw else {}
            posted = parsed if isinstance(parsed, dict) else {}
        except (OSError, EOFError, ValueError, UnicodeDecodeError):
            posted = {}
        location = f"{ctx.fake.public_registry}/-/npm/v1/security/{which}"
        return redirect(307, location, body=jdump(posted), content_type="application/json")
    if scope != "project":
        npm_not_found("Project")
    project = find_project_bang(ctx, unquote(scope_id), False, True)
    authorize_read_package(ctx, project)
    return json_resp(200, [])


def route_npm(ctx, scope, scope_id, rest):
    """Route matrix of §1.1 for one prefix; None means "no route" (catch-all 404)."""
    m_tags = re.match(r"^-/package/(.+)/dist-tags$", rest)
    m_tag = re.match(r"^-/package/(.+)/dist-tags/([^/]+)$", rest)
    audit = {"-/npm/v1/security/advisories/bulk": "advisories/bulk",
             "-/npm/v1/security/audits/quick": "audits/quick"}.get(rest)
    split = rest.find("/-/", 1)
    route = None
    if m_tags and ctx.method == "GET":
        route = lambda: npm_dist_tags(ctx, scope, scope_id, m_tags.group(1), None)  # noqa: E731
    elif m_tag and ctx.method in ("PUT", "DELETE"):
        route = lambda: npm_dist_tags(ctx, scope, scope_id, m_tag.group(1), m_tag.group(2))  # noqa: E731
    elif audit and ctx.method == "POST":
        route = lambda: npm_audit(ctx, scope, scope_id, audit)  # noqa: E731
    elif scope == "project" and ctx.method == "GET" and split > 0 and rest[split + 3:]:
        route = lambda: npm_tarball(ctx, scope_id, rest[:split], rest[split + 3:])  # noqa: E731
    elif scope == "project" and ctx.method == "PUT" and rest and "/" not in rest:
        route = lambda: npm_publish(ctx, scope_id, rest)  # noqa: E731
    elif ctx.method == "GET" and rest:
        route = lambda: npm_metadata(ctx, scope, scope_id, rest)  # noqa: E731
    if route is None:
        # INTERPRETATION: PUT publish at {G}/{I}, unpublish (-rev), DELETE of a tarball,
        # whoami/ping/login... have no route: GitLab's API catch-all answers 404.
        return None
    ctx.caller = authenticate(ctx, "npm")
    if ctx.method != "GET" and ctx.caller.anonymous:
        unauthorized()  # authenticate_non_get!
    if scope == "project":
        project, moved = ctx.world.find_project(unquote(scope_id))
        if moved and ctx.world.can_see_project(ctx.caller, project):
            moved_project(ctx, project)
    return route()


# =============================================================================================
# Go proxy (API.md §2)
# =============================================================================================


def go_case_decode(s):
    return re.sub(r"!([a-z])", lambda m: m.group(1).upper(), s)


def go_version_valid(module_path, version, gv=None):
    """The /vN suffix of the module path must agree with the major version, and the go.mod's
    first line must be exactly `module <module path>` (e.g. not after a project rename)."""
    if gv is not None and gv.files["go.mod"].split(b"\n", 1)[0].strip() != f"module {module_path}".encode():
        return False
    major = int(re.match(r"^v(\d+)", version).group(1))
    m = re.search(r"/v(\d+)$", module_path)
    if major >= 2:
        return bool(m) and int(m.group(1)) == major
    return not (m and int(m.group(1)) >= 2)


def go_find_version(versions, module_path, version):
    gv = versions.get(version)
    if gv and go_version_valid(module_path, version, gv):
        return gv
    m = GO_PSEUDO.match(version)
    if not m:
        return None
    stamp, sha = m.group(3), m.group(4)
    if len(sha) != 12:
        return None
    for cand in versions.values():
        if (cand.commit.startswith(sha) and cand.time.strftime("%Y%m%d%H%M%S") == stamp
                and go_version_valid(module_path, version, cand)):
            return cand
    return None


def route_go(ctx, scope_id, rest):
    m = re.match(r"^(.*)/@v/(list|(.+)\.(info|mod|zip))$", rest)
    if not m:
        return None  # e.g. @latest: API catch-all
    module_raw, what = m.group(1), m.group(4) or "list"
    version_raw = m.group(3)
    if version_raw is not None and not GO_VERSION.fullmatch(version_raw):
        return None  # route requirement not met
    world = ctx.world
    ctx.caller = authenticate(ctx, "go")
    moved_target, moved = world.find_project(unquote(scope_id))
    if moved and world.can_see_project(ctx.caller, moved_target):
        moved_project(ctx, moved_target)
    project = find_project_bang(ctx, unquote(scope_id), True, False)
    authorize_read_package(ctx, project)
    decoded = unquote(module_raw)
    if not decoded.strip("/"):
        fail(400, {"message": '400 Bad request - "Module Name" not given'})
    if re.search(r"[A-Z]", decoded):
        fail(404, {"message": "404 Not Found"})  # upper case must be !-encoded
    module_path = go_case_decode(posixpath.normpath(decoded).strip("/"))
    base = f"{world.go_host}/{project.full_path}"
    if module_path == base:
        subdir = ""
    elif module_path.startswith(base + "/"):
        subdir = module_path[len(base) + 1:]
    else:
        fail(404, {"message": "404 Not Found"})
    versions = world.go.get(project.id, {}).get(subdir, {})
    if what == "list":
        names = sorted((v for v, gv in versions.items() if go_version_valid(module_path, v, gv)), key=semver_key)
        return Resp(200, "\n".join(names), "text/plain")
    version = go_case_decode(version_raw)
    gv = go_find_version(versions, module_path, version)
    if gv is None:
        fail(404, {"message": "404 Not Found"})
    if what == "info":
        return json_resp(200, {"Version": version, "Time": go_time(gv.time)})
    if what == "mod":
        return Resp(200, gv.files["go.mod"], "text/plain")
    data = go_zip(module_path, version, gv.files, gv.time)
    return Resp(200, data, "application/zip", {"Content-Disposition": f'attachment; filename="{version}.zip"',
                                               "Content-Transfer-Encoding": "binary"})


# =============================================================================================
# Packages API (API.md §3)
# =============================================================================================

BOOL_TRUE = {"1", "true", "t", "yes", "y", "on"}
BOOL_FALSE = {"0", "false", "f", "no", "n", "off"}


def parse_params(query, spec):
    """Grape-style coercion. spec: [(name, kind, default, values)]; kind int/str/bool/enum.
    Returns (coerced values, link params: every request param + defaults, coerced)."""
    out, errors = {}, []
    for name, kind, default, values in spec:
        if name not in query:
            if default is not None:
                out[name] = default
            continue
        raw = query[name]
        if kind == "int":
            if not re.fullmatch(r"[+-]?\d+", raw.strip()):
                errors.append(f"{name} is invalid")
                continue
            val = int(raw)
            if values is not None and not values(val):
                errors.append(f"{name} does not have a valid value")
                continue
            out[name] = val
        elif kind == "bool":
            low = raw.strip().lower()
            if low in BOOL_TRUE:
                out[name] = True
            elif low in BOOL_FALSE:
                out[name] = False
            else:
                errors.append(f"{name} is invalid")
        elif kind == "enum":
            if raw not in values:
                errors.append(f"{name} does not have a valid value")
                continue
            out[name] = raw
        else:
            out[name] = raw
    if errors:
        fail(400, {"error": ", ".join(errors)})
    link = dict(query)
    for k, v in out.items():
        link[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out, link


PAGINATION = [("page", "int", 1, None), ("per_page", "int", 20, lambda n: n >= 1)]


def paginate(ctx, items, params, link_params, path_id):
    """Offset pagination with GitLab's headers (OffsetHeaderBuilder)."""
    page = max(1, params["page"])
    per_page = min(100, params["per_page"])
    total = len(items)
    over = total > 10_000
    total_pages = max(1, math.ceil(total / per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    has_next = (page * per_page < total)
    base = dict(link_params, id=path_id, per_page=str(per_page))

    def href(p):
        return f"<{ctx.world.ext_url}{ctx.path}?{to_query(dict(base, page=str(p)))}>"

    links = []
    if page > 1:
        links.append(f'{href(page - 1)}; rel="prev"')
    if has_next:
        links.append(f'{href(page + 1)}; rel="next"')
    links.append(f'{href(1)}; rel="first"')
    if not over:
        links.append(f'{href(total_pages)}; rel="last"')
    headers = [("X-Per-Page", str(per_page)), ("X-Page", str(page)),
               ("X-Next-Page", str(page + 1) if has_next else ""),
               ("X-Prev-Page", str(page - 1) if page > 1 else ""), ("Link", ", ".join(links))]
    if not over:
        headers += [("X-Total", str(total)), ("X-Total-Pages", str(total_pages))]
    return chunk, headers


def user_json(world, username):
    uid, name = USERS.get(username, (1, username))
    avatar = hashlib.md5(f"{username}@example.com".encode()).hexdigest()
    return {"id": uid, "username": username, "name": name, "state": "active",
            "avatar_url": f"https://www.gravatar.com/avatar/{avatar}?s=80&d=identicon",
            "web_url": f"{world.ext_url}/{username}"}


def pipeline_json(world, pl):
    return {"id": pl.id, "iid": pl.iid, "project_id": pl.project_id, "sha": pl.sha, "ref": "main",
            "status": "success", "source": "push", "created_at": iso_ms(pl.created_at),
            "updated_at": iso_ms(pl.updated_at), "web_url": f"{world.ext_url}/{pl.project_path}/-/pipelines/{pl.id}",
            "user": user_json(world, pl.user)}


def tag_json(t):
    # INTERPRETATION (UNCONFIRMED element shape): the raw tag record.
    return {"id": t.id, "package_id": t.package_id, "project_id": t.project_id, "name": t.name,
            "created_at": iso_ms(t.created_at), "updated_at": iso_ms(t.updated_at)}


def package_json_entity(ctx, pkg, group_listing=False, with_versions=False):
    world = ctx.world
    project = world.projects[pkg.project_id]
    links = {}
    if pkg.status in ("default", "deprecated"):
        # INTERPRETATION: terraform modules link to the infrastructure registry page.
        kind = "terraform_module_registry" if pkg.package_type == "terraform_module" else "packages"
        links["web_path"] = f"/{project.full_path}/-/{kind}/{pkg.id}"
    if world.can_destroy_package(ctx.caller, project):
        links["delete_api_path"] = f"{world.ext_url}/api/v4/projects/{project.id}/packages/{pkg.id}"
    out = {"id": pkg.id, "name": pkg.name, "version": pkg.version, "package_type": pkg.package_type,
           "status": pkg.status, "_links": links, "created_at": iso_ms(pkg.created_at),
           "last_downloaded_at": iso_ms(pkg.last_downloaded_at)}
    if group_listing:
        out["project_id"] = project.id
        if world.can_see_project(ctx.caller, project):
            out["project_path"] = project.full_path
    out["tags"] = [tag_json(t) for t in world.tags_of(pkg)]
    if pkg.pipelines:
        out["pipeline"] = pipeline_json(world, max(pkg.pipelines, key=lambda p: p.id))
        out["pipelines"] = []  # deprecated field: always empty when present
    if with_versions:
        others = [p for p in world.packages.values()
                  if p.project_id == pkg.project_id and p.name == pkg.name and p.package_type == pkg.package_type
                  and p.id != pkg.id and p.status in DISPLAYABLE]
        versions = []
        for o in sorted(others, key=lambda p: (p.version is None, p.version or "", p.id)):
            v = {"id": o.id, "version": o.version, "created_at": iso_ms(o.created_at),
                 "tags": [tag_json(t) for t in world.tags_of(o)]}
            if o.pipelines and world.can_read_pipelines(ctx.caller, project):
                v["pipeline"] = pipeline_json(world, max(o.pipelines, key=lambda p: p.id))
            versions.append(v)
        out["versions"] = versions
    return out


def sort_packages(items, order_by, sort, world):
    desc = sort == "desc"

    def key(p):
        if order_by == "name":
            primary = p.name
        elif order_by == "version":
            # Postgres: NULLs sort last ascending, first descending.
            primary = (p.version is None, p.version or "")
        elif order_by == "type":
            primary = p.package_type
        elif order_by == "project_path":
            primary = world.projects[p.project_id].full_path
        else:
            primary = p.created_at
        return (primary, p.id)

    return sorted(items, key=key, reverse=desc)


def filter_packages(items, params):
    if "package_type" in params:
        items = [p for p in items if p.package_type == params["package_type"]]
    else:
        items = [p for p in items if p.package_type != "terraform_module"]
    if "package_name" in params:
        needle = params["package_name"].lower()
        items = [p for p in items if needle in p.name.lower()]
    if "package_version" in params:
        items = [p for p in items if p.version is not None and p.version == params["package_version"]]
    elif not params.get("include_versionless"):
        items = [p for p in items if p.version is not None]
    statuses = (params["status"],) if "status" in params else DISPLAYABLE
    return [p for p in items if p.status in statuses]


LIST_FILTERS = [
    ("package_type", "enum", None, PACKAGE_TYPES),
    ("package_name", "str", None, None),
    ("package_version", "str", None, None),
    ("include_versionless", "bool", None, None),
    ("status", "enum", None, ALL_STATUSES),
]


def project_packages_list(ctx, scope_id, project):
    spec = PAGINATION + [("order_by", "enum", "created_at", ("created_at", "name", "version", "type")),
                         ("sort", "enum", "asc", ("asc", "desc"))] + LIST_FILTERS
    params, link = parse_params(ctx.query, spec)
    items = [p for p in ctx.world.packages.values() if p.project_id == project.id]
    items = sort_packages(filter_packages(items, params), params["order_by"], params["sort"], ctx.world)
    chunk, headers = paginate(ctx, items, params, link, unquote(scope_id))
    return json_resp(200, [package_json_entity(ctx, p) for p in chunk], headers)


def group_packages_list(ctx, scope_id):
    world = ctx.world
    ctx.caller = authenticate(ctx, "plain")
    group = world.find_group(unquote(scope_id))
    if not world.can_read_group(ctx.caller, group):
        plain_not_found("Group")
    spec = PAGINATION + [("exclude_subgroups", "bool", False, None),
                         ("order_by", "enum", "created_at", ("created_at", "name", "version", "type", "project_path")),
                         ("sort", "enum", "asc", ("asc", "desc"))] + LIST_FILTERS
    params, link = parse_params(ctx.query, spec)
    projects = [p for p in world.group_projects(group, not params["exclude_subgroups"])
                if world.can_see_project(ctx.caller, p) and world.can_read_package(ctx.caller, p)]
    pids = {p.id for p in projects}
    items = [p for p in world.packages.values() if p.project_id in pids]
    items = sort_packages(filter_packages(items, params), params["order_by"], params["sort"], world)
    chunk, headers = paginate(ctx, items, params, link, unquote(scope_id))
    return json_resp(200, [package_json_entity(ctx, p, group_listing=True) for p in chunk], headers)


def find_displayable(ctx, project, raw_package_id):
    if not re.fullmatch(r"\d+", raw_package_id):
        fail(400, {"error": "package_id is invalid"})
    pkg = ctx.world.packages.get(int(raw_package_id))
    if pkg is None or pkg.project_id != project.id or pkg.status not in DISPLAYABLE:
        record_not_found()
    return pkg


def packages_project(ctx, scope_id, package_id=None, tail=None, file_id=None):
    """Every /projects/:id/packages[/...] route. tail: None, files, file, download, pipelines."""
    world = ctx.world
    ctx.caller = authenticate(ctx, "packages")
    project = find_project_bang(ctx, unquote(scope_id), False, True)
    authorize_read_package(ctx, project)  # authorize_packages_access!
    if package_id is None:
        return project_packages_list(ctx, scope_id, project)
    if ctx.method == "DELETE" and tail is None:
        authorize_destroy_package(ctx, project)
        pkg = find_displayable(ctx, project, package_id)
        check_unmodified_since(ctx, pkg.updated_at)
        pkg.status = "pending_destruction"
        pkg.updated_at = now()
        return Resp(204, b"", "application/json")
    if ctx.method == "DELETE" and tail == "file":
        authorize_destroy_package(ctx, project)
        pkg = find_displayable(ctx, project, package_id)
        pfile = next((f for f in pkg.installable_files() if str(f.id) == file_id), None)
        if pfile is None:
            # INTERPRETATION: bare not_found! through the npm helper override (API.md §6 note).
            fail(404, {"message": "404  Not Found", "error": " not found"})
        check_unmodified_since(ctx, pfile.created_at)
        pfile.status = "pending_destruction"
        return Resp(204, b"", "application/json")
    pkg = find_displayable(ctx, project, package_id)
    if tail is None:
        if pkg.status == "error":
            fail(404, {"message": "Package not found"})
        return json_resp(200, package_json_entity(ctx, pkg, with_versions=True))
    if tail == "files":
        spec = PAGINATION + [("order_by", "enum", "id", ("id", "created_at", "file_name")),
                             ("sort", "enum", "asc", ("asc", "desc"))]
        params, link = parse_params(ctx.query, spec)
        attr = {"id": lambda f: (f.id,), "created_at": lambda f: (f.created_at, f.id),
                "file_name": lambda f: (f.file_name, f.id)}[params["order_by"]]
        files = sorted(pkg.installable_files(), key=attr, reverse=params["sort"] == "desc")
        chunk, headers = paginate(ctx, files, params, dict(link, package_id=package_id), unquote(scope_id))
        show_pipelines = world.can_read_pipelines(ctx.caller, project)
        return json_resp(200, [file_json(world, f, pkg, show_pipelines) for f in chunk], headers)
    if tail == "download":
        pfile = next((f for f in pkg.installable_files() if str(f.id) == file_id), None)
        if pfile is None:
            fail(404, {"message": "404  Not Found", "error": " not found"})
        return present_file(ctx, pfile, pkg)
    if tail == "pipelines":
        return package_pipelines(ctx, scope_id, package_id, pkg)
    return None


def file_json(world, f, pkg, show_pipelines):
    out = {"id": f.id, "package_id": f.package_id, "created_at": iso_ms(f.created_at), "file_name": f.file_name,
           "size": len(f.data), "file_md5": f.md5, "file_sha1": f.sha1, "file_sha256": f.sha256}
    if pkg.pipelines and show_pipelines:
        out["pipelines"] = [pipeline_json(world, pl) for pl in sorted(pkg.pipelines, key=lambda p: p.id)[:1]]
    return out


def package_pipelines(ctx, scope_id, package_id, pkg):
    spec = [("per_page", "int", 20, lambda n: 1 <= n <= 20), ("cursor", "str", None, None)]
    params, link = parse_params(ctx.query, spec)
    if pkg.status not in ("default", "deprecated"):
        # INTERPRETATION: not_found!('Package not found') through the npm helper override.
        fail(404, {"message": "404 Package Not Found Not Found", "error": "Package not found not found"})
    pls = sorted(pkg.pipelines, key=lambda p: p.id, reverse=True)
    if "cursor" in params:
        try:
            padded = params["cursor"] + "=" * (-len(params["cursor"]) % 4)
            after = int(json.loads(base64.urlsafe_b64decode(padded).decode())["id"])
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            fail(400, {"error": "cursor is invalid"})
        pls = [p for p in pls if p.id < after]
    chunk = pls[: params["per_page"]]
    headers = []
    if len(pls) > len(chunk):
        cursor = base64.urlsafe_b64encode(jdump({"id": str(chunk[-1].id), "_kd": "n"}).encode()).decode()
        q = dict(link, id=unquote(scope_id), package_id=package_id, per_page=str(params["per_page"]), cursor=cursor)
        headers.append(("Link", f'<{ctx.world.ext_url}{ctx.path}?{to_query(q)}>; rel="next"'))
    return json_resp(200, [pipeline_json(ctx.world, p) for p in chunk], headers)


def check_unmodified_since(ctx, updated_at):
    raw = ctx.header("If-Unmodified-Since")
    if not raw:
        return
    try:
        since = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.timezone.utc)
    if updated_at.replace(microsecond=0) > since:
        fail(412, {"message": "412 Precondition Failed"})


def route_project_get(ctx, scope_id):
    ctx.caller = authenticate(ctx, "plain")
    project, moved = ctx.world.find_project(unquote(scope_id))
    if project is None or not ctx.world.can_see_project(ctx.caller, project):
        plain_not_found("Project")
    if moved:
        moved_project(ctx, project)
    ns = ctx.world.find_group(project.namespace_path)
    return json_resp(200, {"id": project.id, "name": project.full_path.rsplit("/", 1)[-1],
                           "path": project.full_path.rsplit("/", 1)[-1], "path_with_namespace": project.full_path,
                           "visibility": project.visibility, "web_url": f"{ctx.world.ext_url}/{project.full_path}",
                           "namespace": {"id": ns.id if ns else None, "full_path": project.namespace_path}})


def route_group_get(ctx, scope_id):
    ctx.caller = authenticate(ctx, "plain")
    group = ctx.world.find_group(unquote(scope_id))
    if not ctx.world.can_read_group(ctx.caller, group):
        plain_not_found("Group")
    return json_resp(200, {"id": group.id, "name": group.full_path.rsplit("/", 1)[-1],
                           "path": group.full_path.rsplit("/", 1)[-1], "full_path": group.full_path,
                           "visibility": group.visibility, "web_url": f"{ctx.world.ext_url}/groups/{group.full_path}"})


def with_moved_check(fn):
    """Project-scoped Packages API routes: a renamed project's old path redirects."""
    def wrapped(ctx, scope_id, *args):
        ctx.caller = authenticate(ctx, "packages")
        project, moved = ctx.world.find_project(unquote(scope_id))
        if moved and ctx.world.can_see_project(ctx.caller, project):
            moved_project(ctx, project)
        return fn(ctx, scope_id, *args)
    return wrapped


def _m(methods, fn):
    """Restrict a route to some methods (others fall through to the catch-all)."""
    def wrapped(ctx, *groups):
        return fn(ctx, *groups) if ctx.method in methods else None
    return wrapped


API_ROUTES = [
    (re.compile(r"^/api/v4/projects/([^/]+)/packages/npm/(.*)$"),
     lambda ctx, pid, rest: route_npm(ctx, "project", pid, rest)),
    (re.compile(r"^/api/v4/groups/([^/]+)/-/packages/npm/(.*)$"),
     lambda ctx, gid, rest: route_npm(ctx, "group", gid, rest)),
    (re.compile(r"^/api/v4/packages/npm/(.*)$"), lambda ctx, rest: route_npm(ctx, "instance", None, rest)),
    (re.compile(r"^/api/v4/projects/([^/]+)/packages/go/(.*)$"), route_go),
    (re.compile(r"^/api/v4/projects/([^/]+)/packages$"),
     _m({"GET"}, with_moved_check(lambda ctx, pid: packages_project(ctx, pid)))),
    (re.compile(r"^/api/v4/projects/([^/]+)/packages/([^/]+)$"),
     _m({"GET", "DELETE"}, with_moved_check(lambda ctx, pid, pk: packages_project(ctx, pid, pk)))),
    (re.compile(r"^/api/v4/projects/([^/]+)/packages/([^/]+)/package_files$"),
     _m({"GET"}, with_moved_check(lambda ctx, pid, pk: packages_project(ctx, pid, pk, "files")))),
    (re.compile(r"^/api/v4/projects/([^/]+)/packages/([^/]+)/package_files/([^/]+)$"),
     _m({"DELETE"}, with_moved_check(lambda ctx, pid, pk, f: packages_project(ctx, pid, pk, "file", f)))),
    (re.compile(r"^/api/v4/projects/([^/]+)/packages/([^/]+)/package_files/([^/]+)/download$"),
     _m({"GET"}, with_moved_check(lambda ctx, pid, pk, f: packages_project(ctx, pid, pk, "download", f)))),
    (re.compile(r"^/api/v4/projects/([^/]+)/packages/([^/]+)/pipelines$"),
     _m({"GET"}, with_moved_check(lambda ctx, pid, pk: packages_project(ctx, pid, pk, "pipelines")))),
    (re.compile(r"^/api/v4/groups/([^/]+)/packages$"), _m({"GET"}, group_packages_list)),
    (re.compile(r"^/api/v4/projects/([^/]+)$"), _m({"GET"}, route_project_get)),
    (re.compile(r"^/api/v4/groups/([^/]+)$"), _m({"GET"}, route_group_get)),
]


def route_api(ctx):
    try:
        for rx, fn in API_ROUTES:
            m = rx.match(ctx.path)
            if m:
                resp = fn(ctx, *m.groups())
                if resp is not None:
                    return resp
                break
        return catch_all()
    except ApiError as e:
        return e.resp


# =============================================================================================
# Object storage (aux listener)
# =============================================================================================

CREDENTIAL_HEADERS = ("authorization", "private-token", "job-token", "deploy-token")


class ObjectStore:
    """Signed-URL blob store. Needs no credentials and records any it is sent."""

    def __init__(self):
        self.blobs: dict[str, tuple[bytes, str]] = {}
        self.secret = b"fake-gitlab-object-storage"
        self.base_url = None
        self.seen: list[dict] = []
        self._n = 0

    def sign(self, key, expires):
        return hmac.new(self.secret, f"{key}:{expires}".encode(), hashlib.sha256).hexdigest()

    def put(self, data, filename):
        """Store bytes; return a signed URL (valid 10 minutes)."""
        digest = hashlib.sha256(data).hexdigest()[:16]
        key = f"{digest}/{quote_plus(filename)}"
        self.blobs[key] = (data, filename)
        expires = int(time.time()) + 600
        return f"{self.base_url}/objects/{key}?X-Amz-Expires={expires}&X-Amz-Signature={self.sign(key, expires)}"

    def serve(self, method, path, query, headers):
        for name in CREDENTIAL_HEADERS:
            v = headers.get(name)
            if v is not None:
                self.seen.append({"header": name, "value": v, "path": path})
        if method not in ("GET", "HEAD"):
            return Resp(405, "<Error><Code>MethodNotAllowed</Code></Error>", "application/xml")
        key = path[len("/objects/"):]
        q = dict(parse_qsl(query, keep_blank_values=True))
        try:
            expires = int(q.get("X-Amz-Expires", ""))
        except ValueError:
            expires = 0
        sig = q.get("X-Amz-Signature", "")
        if not hmac.compare_digest(sig, self.sign(key, expires)) or expires < time.time():
            return Resp(403, "<Error><Code>SignatureDoesNotMatch</Code></Error>", "application/xml")
        if key not in self.blobs:
            return Resp(404, "<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        data, filename = self.blobs[key]
        return Resp(200, data, "application/octet-stream",
                    {"Content-Disposition": f'attachment; filename="{filename}"', "ETag": f'"{key[:16]}"'})


# =============================================================================================
# The fake as a whole: state, control API, faults
# =============================================================================================

DEFAULT_SETTINGS = {"npm_forwarding": False, "multiple_projects": False, "tarball_redirect": False,
                    "metadata_cache": "off"}
FAULT_KINDS = ("500", "502", "503", "429", "reset", "truncate", "slow", "hang")


class Fault:
    def __init__(self, match, kind, count, delay_ms):
        self.match, self.kind, self.remaining, self.delay_ms = match, kind, count, delay_ms
        self.cleared = threading.Event()


class Fake:
    def __init__(self, go_host, public_registry, verbose):
        self.go_host, self.public_registry, self.verbose = go_host.lower(), public_registry.rstrip("/"), verbose
        self.lock = threading.RLock()
        self.settings = dict(DEFAULT_SETTINGS)
        self.objstore = ObjectStore()
        self.world = None
        self.ext_url = None
        self.faults: list[Fault] = []
        self.overrides: list[dict] = []
        self.counts: dict[str, int] = {}
        self.total = 0
        self.log: list[dict] = []
        self.down = False
        self.down_mode = "reset"
        self.down_timer = None
        self.main = None
        self.aux = None
        self.port = None
        self.state_lock = threading.Lock()

    # ---- requests log ------------------------------------------------------------------------

    def record(self, method, path, query, headers):
        entry = {"method": method, "path": path, "query": query,
                 "headers": {k.lower(): v for k, v in headers_items(headers)}, "status": None}
        with self.lock:
            key = f"{method} {path}"
            self.counts[key] = self.counts.get(key, 0) + 1
            self.total += 1
            self.log.append(entry)
            del self.log[:-2000]
        return entry

    # ---- faults ------------------------------------------------------------------------------

    def take_fault(self, path):
        with self.lock:
            for f in self.faults:
                if f.match in path:
                    if f.remaining > 0:
                        f.remaining -= 1
                        if f.remaining == 0:
                            self.faults.remove(f)
                    return f
        return None

    def take_override(self, method, path):
        decoded = unquote(path)
        with self.lock:
            for o in self.overrides:
                same_method = o["method"] == method or (method == "HEAD" and o["method"] == "GET")
                if same_method and o["path"] in (path, decoded):
                    if o["remaining"] > 0:
                        o["remaining"] -= 1
                        if o["remaining"] == 0:
                            self.overrides.remove(o)
                    return o
        return None

    # ---- down / up ---------------------------------------------------------------------------

    def go_down(self, seconds, mode, current_sock):
        with self.state_lock:
            if self.down_timer:
                self.down_timer.cancel()
                self.down_timer = None
            self.down, self.down_mode = True, mode
            if mode == "refuse" and self.main is not None:
                srv, self.main = self.main, None
                srv.shutdown()
                srv.server_close()
                srv.kill_connections(except_sock=current_sock)
            elif self.main is not None:
                self.main.kill_connections(except_sock=current_sock)
            if seconds and seconds > 0:
                self.down_timer = threading.Timer(seconds, self.go_up)
                self.down_timer.daemon = True
                self.down_timer.start()

    def go_up(self):
        with self.state_lock:
            if self.down_timer:
                self.down_timer.cancel()
                self.down_timer = None
            self.down = False
            if self.main is None:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        self.main = self._serve(TrackingServer(("127.0.0.1", self.port), MainHandler))
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)

    def _serve(self, srv):
        srv.fake = self
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return srv

    def start(self, port):
        main = TrackingServer(("127.0.0.1", port), MainHandler)
        self.port = main.server_address[1]
        self.ext_url = f"http://127.0.0.1:{self.port}"
        self.aux = self._serve(TrackingServer(("127.0.0.1", 0), AuxHandler))
        self.objstore.base_url = f"http://127.0.0.1:{self.aux.server_address[1]}"
        self.world = World(self.ext_url, self.go_host)
        self.main = self._serve(main)

    def stop(self):
        with self.state_lock:
            for srv in (self.main, self.aux):
                if srv is not None:
                    srv.shutdown()
                    srv.server_close()
            for f in self.faults:
                f.cleared.set()

    # ---- control API -------------------------------------------------------------------------

    def world_json(self):
        w = self.world
        npm = [{"id": p.id, "project_id": p.project_id, "name": p.name, "version": p.version, "status": p.status,
                "tags": [t.name for t in w.tags_of(p)], "shasum": p.files[0].sha1 if p.files else None}
               for p in sorted(w.packages.values(), key=lambda p: p.id) if p.package_type == "npm"]
        go = []
        for pid, mods in sorted(w.go.items()):
            for subdir, versions in sorted(mods.items()):
                go.append({"project_id": pid, "module": go_module_path(w.projects[pid].full_path, subdir, w.go_host),
                           "versions": sorted(versions, key=semver_key)})
        return {
            "external_url": self.ext_url, "go_host": self.go_host, "public_registry": self.public_registry,
            "objstore_url": self.objstore.base_url, "control_url": self.objstore.base_url + "/__fake",
            "tokens": dict(TOKENS),
            "token_info": [{"token": t.value, "kind": t.kind, "user": t.user, "project_id": t.project_id,
                            "state": t.state, "write": t.write} for t in w.tokens.values()],
            "members": [{"user": u, "project_id": pid, "access_level": r} for (u, pid), r in sorted(w.members.items())],
            "groups": [{"id": g.id, "full_path": g.full_path, "visibility": g.visibility} for g in w.groups.values()],
            "projects": [{"id": p.id, "path_with_namespace": p.full_path, "visibility": p.visibility}
                         for p in w.projects.values()],
            "moved": dict(w.moved), "npm": npm, "go": go, "settings": dict(self.settings),
        }

    def control(self, method, path, body, sock):
        """/__fake/... ; returns Resp."""
        try:
            data = json.loads(body.decode("utf-8")) if body else {}
        except (ValueError, UnicodeDecodeError):
            return json_resp(400, {"error": "control body must be JSON"})
        if not isinstance(data, dict):
            data = {}
        name = path[len("/__fake/"):].rstrip("/")
        if name in ("down", "up"):  # outside self.lock: may join server threads
            if method != "POST":
                return json_resp(405, {"error": "POST only"})
            if name == "down":
                mode = data.get("mode", "reset")
                if mode not in ("reset", "refuse"):
                    return json_resp(400, {"error": "mode must be reset or refuse"})
                self.go_down(float(data.get("seconds") or 0), mode, sock)
            else:
                self.go_up()
            return json_resp(200, {"down": self.down, "mode": self.down_mode})
        with self.lock:
            try:
                return self._control_locked(method, name, data)
            except (KeyError, TypeError, ValueError) as e:
                return json_resp(400, {"error": f"bad control request: {e!r}"})

    def _control_locked(self, method, name, data):
        w = self.world
        if method == "GET":
            if name == "world":
                return json_resp(200, self.world_json())
            if name == "requests":
                return json_resp(200, {"total": self.total, "by_path": dict(self.counts)})
            if name == "requests/log":
                return json_resp(200, self.log)
            if name == "settings":
                return json_resp(200, self.settings)
            if name == "objstore_seen_credentials":
                return json_resp(200, self.objstore.seen)
            if name == "faults":
                return json_resp(200, [{"match": f.match, "kind": f.kind, "remaining": f.remaining}
                                       for f in self.faults])
            return json_resp(404, {"error": f"no control route GET {name}"})
        if method != "POST":
            return json_resp(405, {"error": "POST only"})
        if name == "requests/reset":
            self.counts, self.total, self.log = {}, 0, []
            return json_resp(200, {"ok": True})
        if name == "objstore_seen_credentials/reset":
            self.objstore.seen = []
            return json_resp(200, {"ok": True})
        if name == "settings":
            for k, v in data.items():
                if k not in DEFAULT_SETTINGS:
                    return json_resp(400, {"error": f"unknown setting {k}"})
                if k == "metadata_cache":
                    if v not in ("off", "file", "redirect"):
                        return json_resp(400, {"error": "metadata_cache: off|file|redirect"})
                    self.settings[k] = v
                else:
                    self.settings[k] = bool(v)
            return json_resp(200, self.settings)
        if name == "npm/add":
            pid = int(data["project_id"])
            if pid not in w.projects:
                return json_resp(400, {"error": "unknown project"})
            pkg = w.add_npm(pid, data["name"], data["version"], data.get("dependencies") or {},
                            data.get("tags") or [], status=data.get("status", "default"),
                            extra=data.get("fields") or {}, padding=int(data.get("size") or 0))
            pkg.created_at = pkg.updated_at = now()
            return json_resp(200, {"id": pkg.id, "file_id": pkg.files[0].id, "shasum": pkg.files[0].sha1,
                                   "size": len(pkg.files[0].data), "tarball": npm_tarball_url(w, pkg, pkg.files[0])})
        if name == "npm/delete_version":
            pid = int(data["project_id"])
            gone = [p for p in list(w.packages.values()) if p.project_id == pid and p.package_type == "npm"
                    and p.name == data["name"] and p.version == data["version"]]
            for p in gone:
                w.remove_package(p)
            return json_resp(200 if gone else 404, {"deleted": [p.id for p in gone]})
        if name == "go/add":
            pid = int(data["project_id"])
            project = w.projects[pid]
            module = data.get("module", "")
            base = f"{w.go_host}/{project.full_path}"
            if module.startswith(w.go_host + "/") and not (module == base or module.startswith(base + "/")):
                return json_resp(400, {"error": f"module must be {base} or below it"})
            subdir = module[len(base):].strip("/") if module.startswith(base) else module.strip("/")
            version = data["version"]
            if not (version.startswith("v") and SEMVER_STRICT.match(version[1:])):
                return json_resp(400, {"error": "version must look like vX.Y.Z"})
            gv = w.add_go(pid, subdir, version)
            return json_resp(200, {"module": go_module_path(project.full_path, subdir, w.go_host),
                                   "version": version, "time": go_time(gv.time)})
        if name == "tokens/revoke":
            tok = w.tokens.get(data["token"])
            if tok is None:
                return json_resp(404, {"error": "unknown token"})
            tok.state = "finished" if tok.kind == "job" else "revoked"
            return json_resp(200, {"token": tok.value, "state": tok.state})
        if name == "projects/rename":
            project = w.projects[int(data["project_id"])]
            new_path = data["path"].strip("/")
            if "/" not in new_path:
                new_path = f"{project.namespace_path}/{new_path}"
            w.moved[project.full_path.lower()] = project.id
            w.moved.pop(new_path.lower(), None)
            project.full_path = new_path
            return json_resp(200, {"id": project.id, "path_with_namespace": new_path})
        if name == "fault":
            kind = str(data["kind"])
            if kind not in FAULT_KINDS:
                return json_resp(400, {"error": f"kind must be one of {FAULT_KINDS}"})
            f = Fault(str(data.get("match", "")), kind, int(data.get("count") or 0), int(data.get("delay_ms") or 0))
            self.faults.append(f)
            return json_resp(200, {"faults": len(self.faults)})
        if name == "fault/clear":
            for f in self.faults:
                f.cleared.set()
            self.faults = []
            return json_resp(200, {"ok": True})
        if name == "override":
            self.overrides.append({"method": str(data.get("method", "GET")).upper(), "path": data["path"],
                                   "status": int(data.get("status", 200)), "headers": data.get("headers") or {},
                                   "body": data.get("body", ""), "remaining": int(data.get("count") or 0)})
            return json_resp(200, {"overrides": len(self.overrides)})
        if name == "override/clear":
            self.overrides = []
            return json_resp(200, {"ok": True})
        if name == "reset":
            for f in self.faults:
                f.cleared.set()
            self.world = World(self.ext_url, self.go_host)
            self.settings = dict(DEFAULT_SETTINGS)
            self.faults, self.overrides = [], []
            self.counts, self.total, self.log = {}, 0, []
            self.objstore.seen, self.objstore.blobs = [], {}
            return json_resp(200, {"ok": True})
        return json_resp(404, {"error": f"no control route POST {name}"})


def headers_items(headers):
    merged = {}
    for k, v in headers.items():
        low = k.lower()
        merged[low] = f"{merged[low]}, {v}" if low in merged else v
    return merged.items()


# =============================================================================================
# HTTP servers and handlers
# =============================================================================================


class TrackingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, addr, handler):
        self.conns = set()
        self.conns_lock = threading.Lock()
        self.fake = None
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def kill_connections(self, except_sock=None):
        with self.conns_lock:
            victims = [c for c in self.conns if c is not except_sock]
        for c in victims:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if self.fake is not None and self.fake.verbose:
            super().handle_error(request, client_address)


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    timeout = 600  # idle keep-alive connections are closed after this

    @property
    def fake(self):
        return self.server.fake

    def version_string(self):
        return "nginx"

    def log_message(self, fmt, *args):
        if self.fake.verbose:
            sys.stderr.write("fake-gitlab: %s - %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_OPTIONS(self):
        self.dispatch("OPTIONS")

    # ---- plumbing -------------------------------------------------------------------------

    def dispatch(self, method):
        self._sent_headers = False
        try:
            self.handle_request(method)
        except (ConnectionError, TimeoutError, socket.timeout, BrokenPipeError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - never let a request take the process down
            if self.fake.verbose:
                traceback.print_exc()
            self.close_connection = True
            if not self._sent_headers:
                try:
                    self.send(Resp(500, jdump({"message": "500 Internal Server Error"})), "GET")
                except OSError:
                    pass

    def split_target(self):
        target = self.path
        if "://" in target.split("?", 1)[0]:  # absolute-form request target
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        path, _, query = target.partition("?")
        return path or "/", query

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("eof in chunked body")
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += n
                if size > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(n))
                self.rfile.readline(16)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        n = int(raw.strip())
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad content length")
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise ConnectionError("short body")
        return data

    def reset_connection(self):
        """Close without an answer (RST)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send(self, resp, method, mode=None, delay_ms=0):
        """Write a response. mode: None, 'truncate' (half the body, then close), 'slow'."""
        body = resp.body
        self._sent_headers = True
        self.send_response(resp.status)
        has_ct = any(k.lower() == "content-type" for k, _ in resp.headers)
        if resp.content_type and not has_ct:
            self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers:
            if k.lower() != "content-length":
                self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method == "HEAD" or resp.status in (204, 304):
            if mode == "truncate":
                self.reset_connection()
            return
        if mode == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.reset_connection()
        elif mode == "slow":
            step, pause = 256, (delay_ms or 200) / 1000.0
            self.wfile.flush()
            for i in range(0, len(body), step):
                time.sleep(pause)
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
        else:
            self.wfile.write(body)

    def body_or_fail(self, method):
        try:
            return self.read_body()
        except (ValueError, TypeError):
            self.close_connection = True
            self.send(Resp(400, jdump({"error": "400 Bad Request"})), method)
            return None

    def serve_control(self, method, path):
        body = self.body_or_fail(method)
        if body is None:
            return
        resp = self.fake.control(method, path, body, self.connection)
        self.send(resp, method)
        if path.startswith("/__fake/down"):
            self.close_connection = True


class MainHandler(BaseHandler):
    def handle_request(self, method):
        fake = self.fake
        path, query = self.split_target()
        if path.startswith("/__fake/"):
            return self.serve_control(method, path)
        body = self.body_or_fail(method)
        if body is None:
            return
        entry = fake.record(method, path, query, self.headers)
        if fake.down:
            entry["status"] = "down"
            return self.reset_connection()
        override = fake.take_override(method, path)
        if override is not None:
            entry["status"] = override["status"]
            hdrs = {k: v for k, v in override["headers"].items()}
            ctype = next((v for k, v in hdrs.items() if k.lower() == "content-type"), "application/json")
            obody = override["body"]
            obody = obody if isinstance(obody, str) else jdump(obody)
            return self.send(Resp(override["status"], obody, ctype, hdrs), method)
        fault = fake.take_fault(path) if path.startswith("/api/v4") else None
        mode = None
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.kind == "hang":
                fault.cleared.wait()  # until POST /__fake/fault/clear (or reset)
            elif fault.kind not in ("slow",) and fault.delay_ms:
                time.sleep(fault.delay_ms / 1000.0)
            if fault.kind == "reset":
                entry["status"] = "reset"
                return self.reset_connection()
            if fault.kind in ("500", "502", "503", "429"):
                entry["status"] = int(fault.kind)
                return self.send(fault_response(fault.kind), method)
            if fault.kind in ("truncate", "slow"):
                mode = fault.kind
        if path.startswith("/api/v4/") or path == "/api/v4":
            with fake.lock:
                ctx = Ctx(fake, method, path, query, self.headers, body)
                resp = route_api(ctx)
        else:
            resp = Resp(404, "404 page not found\n", "text/plain")
        entry["status"] = resp.status
        self.send(resp, method, mode, fault.delay_ms if fault else 0)


def fault_response(kind):
    if kind == "500":
        return json_resp(500, {"message": "500 Internal Server Error"})
    if kind == "429":
        return Resp(429, "Retry later\n", "text/plain", {"Retry-After": "1"})
    text = {"502": "502 Bad Gateway", "503": "503 Service Temporarily Unavailable"}[kind]
    return Resp(int(kind), f"<html><head><title>{text}</title></head><body><center><h1>{text}</h1></center>"
                           f"<hr><center>nginx</center></body></html>\n", "text/html")


class AuxHandler(BaseHandler):
    """Object storage + a second entrance to the control API."""

    def handle_request(self, method):
        fake = self.fake
        path, query = self.split_target()
        if path.startswith("/__fake/"):
            return self.serve_control(method, path)
        body = self.body_or_fail(method)
        if body is None:
            return
        entry = fake.record(method, path, query, self.headers)
        if path.startswith("/objects/"):
            with fake.lock:
                resp = fake.objstore.serve(method, path, query, headers_dict(self.headers))
        else:
            resp = Resp(404, "<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        del body
        entry["status"] = resp.status
        self.send(resp, method)


def headers_dict(headers):
    return dict(headers_items(headers))


# =============================================================================================
# Main
# =============================================================================================


def main(argv=None):
    ap = argparse.ArgumentParser(description="Independent fake GitLab for packrat's e2e suite")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--go-host", default=DEFAULT_GO_HOST)
    ap.add_argument("--public-registry", default=DEFAULT_PUBLIC_REGISTRY)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    fake = Fake(args.go_host, args.public_registry, args.verbose)
    fake.start(args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"fake-gitlab listening on http://127.0.0.1:{fake.port}", flush=True)
    if args.verbose:
        print(f"fake-gitlab: object storage and control at {fake.objstore.base_url}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
