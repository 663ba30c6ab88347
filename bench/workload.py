"""The bench workload, generated once and cached under bench/out/workload.

npm: a real dependency tree. A temp project depending on BENCH_NPM_DEPS is resolved by the
real npm client against the public registry (`npm install --package-lock-only`); every
lockfile entry with a `resolved` URL is downloaded once and checked against its `integrity`.

Go: 100 synthetic modules gitlab.example.com/bench/go/m000 ... m099 at v1.0.0, zips from
about 13 KB to 5.9 MB (seeded random content, so the sizes are real after deflate), with
their go.sum lines computed here (dirhash h1:, as the go command does).

Layout under `bench/out/workload/`:

    npm/package.json, npm/package-lock.json    the resolved project (public registry URLs)
    npm/tgz/<name>/-/<name>-<version>.tgz       every tarball, named as GitLab names it
    go/<module>/@v/{list,v1.0.0.info,v1.0.0.mod,v1.0.0.zip}
    go.sum, manifest.json                       manifest.json is written last: its presence
                                                means the workload is complete

Packuments are not stored here: they name the upstream's host and port, so the bench writes
them into its work directory at run time (`write_packuments`).
"""

import base64
import concurrent.futures
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import urllib.request
import zipfile

FORMAT = 1  # bump to regenerate cached workloads after a change here

NPM_DEPS = "express react react-dom typescript lodash webpack jest eslint axios @types/react @swc/core".split()
NPM_PROJECT = 1  # GitLab project holding the npm packages
GO_PROJECT = 2  # GitLab project holding the Go modules
GO_HOST = "gitlab.example.com"
GO_ROOT = f"{GO_HOST}/bench/go"
GO_MODULES = 100
GO_VERSION = "v1.0.0"
GO_MIN_ZIP = 13_000
GO_MAX_ZIP = 5_900_000
GO_INFO = '{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}'

NPM_PREFIX = f"/api/v4/projects/{NPM_PROJECT}/packages/npm"
GO_PREFIX = f"/api/v4/projects/{GO_PROJECT}/packages/go"


def log(msg):
    print(f"[workload] {msg}", flush=True)


# ---- npm -----------------------------------------------------------------------------------


def npm_file_name(name, version):
    """The tarball's file name as GitLab stores it: the scope included (`@scope/name-1.0.0.tgz`)."""
    return f"{name}-{version}.tgz"


def tarball_path(name, version):
    """The GitLab project route of a tarball (scope and slash not encoded)."""
    return f"{NPM_PREFIX}/{name}/-/{npm_file_name(name, version)}"


def packument_path(name):
    """The route npm requests a packument at (`@scope%2fname`)."""
    return f"{NPM_PREFIX}/{name.replace('/', '%2f')}"


def _lock_name(key, entry, resolved):
    """The real package name of a lockfile entry (aliases like `string-width-cjs` name the
    package in the resolved URL, not in the node_modules path)."""
    m = re.match(r"https://registry\.npmjs\.org/(.+?)/-/", resolved)
    if m:
        return urllib.request.unquote(m.group(1))
    return entry.get("name") or key.rsplit("node_modules/", 1)[-1]


def _check_integrity(data, integrity):
    for item in integrity.split():
        algo, _, b64 = item.partition("-")
        if algo in ("sha512", "sha384", "sha256", "sha1"):
            return base64.b64encode(hashlib.new(algo, data).digest()).decode() == b64
    raise ValueError(f"no usable hash in integrity {integrity!r}")


def _resolve_lockfile(npm_dir):
    with tempfile.TemporaryDirectory(prefix="packrat-bench-npm-") as tmp:
        with open(os.path.join(tmp, "package.json"), "w") as f:
            json.dump({"name": "packrat-bench-app", "version": "1.0.0", "private": True}, f)
        userconfig = os.path.join(tmp, "empty-npmrc")  # the user's ~/.npmrc may omit `resolved`
        open(userconfig, "w").close()
        log(f"resolving {' '.join(NPM_DEPS)} with npm against the public registry")
        subprocess.run(
            ["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund",
             "--omit-lockfile-registry-resolved=false", "--registry=https://registry.npmjs.org/",
             "--userconfig", userconfig, "--cache", os.path.join(tmp, ".npm-cache"), *NPM_DEPS],
            cwd=tmp, check=True, stdout=subprocess.DEVNULL,
        )
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(tmp, name), os.path.join(npm_dir, name))


def _npm_entries(lock):
    """Unique (name, version) tarballs of the lockfile with their lock entry."""
    out = {}
    for key, entry in lock["packages"].items():
        resolved = entry.get("resolved")
        if not key or not resolved:
            continue
        name = _lock_name(key, entry, resolved)
        out.setdefault((name, entry["version"]), (resolved, entry))
    return out


def _download(url, dest, integrity):
    if os.path.exists(dest):
        with open(dest, "rb") as f:
            data = f.read()
        if _check_integrity(data, integrity):
            return data
    for attempt in range(4):
        try:
            with urllib.request.urlopen(url, timeout=120) as r:
                data = r.read()
            break
        except OSError:
            if attempt == 3:
                raise
    if not _check_integrity(data, integrity):
        raise RuntimeError(f"{url}: integrity mismatch")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest + ".part", "wb") as f:
        f.write(data)
    os.replace(dest + ".part", dest)
    return data


# Per-version keys GitLab exposes (API.md 1.4), taken from the lockfile entry when present.
_VERSION_KEYS = ("dependencies", "optionalDependencies", "peerDependencies", "bin", "engines",
                 "deprecated", "hasInstallScript")


def _make_npm(root):
    npm_dir = os.path.join(root, "npm")
    os.makedirs(npm_dir, exist_ok=True)
    if not os.path.exists(os.path.join(npm_dir, "package-lock.json")):
        _resolve_lockfile(npm_dir)
    with open(os.path.join(npm_dir, "package-lock.json")) as f:
        lock = json.load(f)
    entries = _npm_entries(lock)
    log(f"{len(entries)} tarballs in the lockfile: downloading what is missing, checking integrity")

    def fetch(item):
        (name, version), (resolved, entry) = item
        rel = os.path.join("tgz", name, "-", npm_file_name(name, version))
        data = _download(resolved, os.path.join(npm_dir, rel), entry["integrity"])
        info = {k: entry[k] for k in _VERSION_KEYS if k in entry}
        return {
            "name": name, "version": version, "file": os.path.join("npm", rel), "size": len(data),
            "sha1": hashlib.sha1(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(),
            "path": tarball_path(name, version), "integrity": entry["integrity"], "resolved": resolved,
            "info": info,
        }

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        tarballs = list(pool.map(fetch, sorted(entries.items())))
    return tarballs


def _version_key(v):
    core, _, pre = v.partition("-")
    nums = tuple(int(x) if x.isdigit() else 0 for x in core.split("."))
    return (nums, pre == "", pre)


def packuments(tarballs, upstream_url):
    """GitLab-shaped packuments (name, versions, dist-tags) of the versions we have, with
    tarball URLs at the upstream's project route. Returns {name: document}."""
    by_name = {}
    for t in tarballs:
        by_name.setdefault(t["name"], []).append(t)
    docs = {}
    for name, items in sorted(by_name.items()):
        versions = {}
        for t in sorted(items, key=lambda t: _version_key(t["version"])):
            v = {"name": name, "version": t["version"]}
            v.update(t["info"])
            v["dist"] = {"shasum": t["sha1"], "tarball": upstream_url + t["path"]}
            versions[t["version"]] = v
        releases = [v for v in versions if "-" not in v] or list(versions)
        latest = max(releases, key=_version_key)
        docs[name] = {"name": name, "versions": versions, "dist-tags": {"latest": latest}}
    return docs


def write_packuments(tarballs, upstream_url, meta_dir):
    """Writes each packument to meta_dir/<name>.json (the upstream nginx's packument tree)."""
    for name, doc in packuments(tarballs, upstream_url).items():
        path = os.path.join(meta_dir, name + ".json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))


# ---- Go ------------------------------------------------------------------------------------


def _h1(files):
    """dirhash.Hash1: sha256 over "<sha256 hex>  <name>\\n" lines, sorted by name."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(h.digest()).decode()


def _go_module_zip(index, target):
    """A deflated module zip of about `target` bytes (seeded random content)."""
    mod = f"{GO_ROOT}/m{index:03d}"
    pkg = f"m{index:03d}"
    rng = random.Random(index)
    prefix = f"{mod}@{GO_VERSION}/"
    gomod = f"module {mod}\n\ngo 1.19\n".encode()
    files = {
        prefix + "go.mod": gomod,
        prefix + f"{pkg}.go": f"package {pkg}\n\n// Name is this module's name.\nfunc Name() string {{ return {pkg!r} }}\n"
        .replace("'", '"').encode(),
    }
    # base64 of random bytes deflates to about 76%: write enough of it to reach the target.
    remaining = max(0, int((target - 600) / 0.76))
    k = 0
    while remaining > 0:
        n = min(remaining, 256 * 1024)
        text = base64.b64encode(rng.randbytes(n * 3 // 4 + 3)).decode()[:n]
        files[prefix + f"blob{k:03d}.go"] = f'package {pkg}\n\nconst blob{k:03d} = "{text}"\n'.encode()
        remaining -= n
        k += 1
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, files[name])
    return mod, gomod, buf.getvalue(), _h1(files)


def _make_go(root):
    go_dir = os.path.join(root, "go")
    modules, sums = [], []
    ratio = (GO_MAX_ZIP / GO_MIN_ZIP) ** (1 / (GO_MODULES - 1))
    log(f"writing {GO_MODULES} Go modules under {GO_ROOT}")
    for i in range(GO_MODULES):
        mod, gomod, data, h1 = _go_module_zip(i, GO_MIN_ZIP * ratio**i)
        vdir = os.path.join(go_dir, mod, "@v")
        os.makedirs(vdir, exist_ok=True)
        for name, body in (("list", (GO_VERSION + "\n").encode()), (f"{GO_VERSION}.info", GO_INFO.encode()),
                           (f"{GO_VERSION}.mod", gomod), (f"{GO_VERSION}.zip", data)):
            with open(os.path.join(vdir, name), "wb") as f:
                f.write(body)
        files = {}
        for name in ("list", f"{GO_VERSION}.info", f"{GO_VERSION}.mod", f"{GO_VERSION}.zip"):
            body = data if name.endswith(".zip") else open(os.path.join(vdir, name), "rb").read()
            files[name] = {"file": os.path.join("go", mod, "@v", name), "path": f"{GO_PREFIX}/{mod}/@v/{name}",
                           "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        modules.append({"module": mod, "version": GO_VERSION, "files": files})
        sums.append(f"{mod} {GO_VERSION} {h1}")
        sums.append(f"{mod} {GO_VERSION}/go.mod {_h1({'go.mod': gomod})}")
    with open(os.path.join(root, "go.sum"), "w") as f:
        f.write("\n".join(sums) + "\n")
    return modules


# ---- entry point ---------------------------------------------------------------------------


def ensure(root):
    """The workload manifest, generating (or completing) the workload under root first."""
    manifest_path = os.path.join(root, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("format") == FORMAT:
            return manifest
    os.makedirs(root, exist_ok=True)
    tarballs = _make_npm(root)
    modules = _make_go(root)
    manifest = {"format": FORMAT, "npm_deps": NPM_DEPS, "tarballs": tarballs, "go_modules": modules}
    with open(manifest_path + ".part", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(manifest_path + ".part", manifest_path)
    total = sum(t["size"] for t in tarballs)
    gozip = sum(m["files"][f"{GO_VERSION}.zip"]["size"] for m in modules)
    log(f"workload ready: {len(tarballs)} tarballs ({total / 1e6:.1f} MB), {len(modules)} Go zips ({gozip / 1e6:.1f} MB)")
    return manifest


if __name__ == "__main__":
    import sys

    ensure(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "workload"))
