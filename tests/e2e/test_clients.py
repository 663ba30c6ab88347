"""Every client at every prefix, online and then through the whole air-gap flow.

Online: npm, pnpm 9, yarn 1, yarn 4 and bun install ``@acme/app`` (which depends on
``@acme/util``) and ``@acme/ui`` at the project, group and instance prefixes, each with the
config the README gives; go downloads and builds modules through the project route (by id
and by path) and through ``/go/``, over https with ``.netrc`` credentials.

Air gap: one lockfile per client, each from a different prefix, is synced (``packrat sync``),
exported, imported into a fresh data directory, and served offline on the same address (the
lockfiles name it) with the fake GitLab stopped. Then every client installs from its frozen
lockfile at every prefix: a file synced at one prefix is served at all three.
"""

import json
import os
import shutil
import tempfile
import unittest

import harness as h

NODE_CLIENTS = ["npm", "pnpm", "yarn1", "yarn4", "bun"]
PREFIXES = ["project", "group", "instance"]
# Which online lockfile each client contributes to the sync: different prefixes on purpose.
SYNC_FROM = {"npm": "project", "yarn1": "group", "pnpm": "instance", "yarn4": "project", "bun": "group"}

PACKAGE_JSON = """{
  "name": "e2e-consumer",
  "version": "1.0.0",
  "private": true,
  "dependencies": {
    "@acme/app": "1.0.0",
    "@acme/ui": "2.0.0"
  }
}
"""

GO_MOD = """module example.com/consumer

go 1.19
"""

GO_MAIN = """package main

import (
	"fmt"

	private "gitlab.example.com/acme/gomods"
	caps "gitlab.example.com/pub/gomods/Caps"
	public "gitlab.example.com/pub/gomods"
)

func main() {
	fmt.Println(private.Hello(), public.Hello(), caps.Hello())
}
"""


# Resolved the way node resolves them (pnpm does not hoist @acme/util next to @acme/app).
VERSIONS_JS = """
const path = require('path');
const app = require.resolve('@acme/app/package.json');
const util = require.resolve('@acme/util/package.json', { paths: [path.dirname(app)] });
console.log(JSON.stringify({
  app: require(app).version,
  util: require(util).version,
  ui: require('@acme/ui/package.json').version,
  code: require('@acme/app'),
}));
"""


def check_node_install(test, work):
    out = work.run([h.require("node"), "-e", VERSIONS_JS])
    got = json.loads(out.stdout)
    test.assertEqual(
        {k: got[k] for k in ("app", "util", "ui")}, {"app": "1.0.0", "util": "1.1.0", "ui": "2.0.0"}
    )
    test.assertIn("1.0.0", got["code"])


class NodeClients(unittest.TestCase):
    """Online cells first (test_1_*), then the offline ones (test_2_*) from their lockfiles."""

    @classmethod
    def setUpClass(cls):
        cls.fake = h.Fake()
        cls.online = h.Packrat(upstream=cls.fake.url).start()
        cls.works = {}
        cls.mirror = None

    @classmethod
    def tearDownClass(cls):
        for p in (cls.online, cls.mirror):
            if p:
                p.cleanup()
        cls.fake.stop()
        for w in cls.works.values():
            w.cleanup()

    def online_install(self, client, prefix):
        work = h.Workdir(f"{client}-{prefix}")
        self.works[(client, prefix)] = work
        registry = h.npm_prefix(self.online.url, prefix)
        h.configure_node_client(work, client, self.online.url, registry, h.ALICE)
        work.write("package.json", PACKAGE_JSON)
        try:
            work.run(h.install_command(client))
            check_node_install(self, work)
            self.assertTrue(os.path.exists(work.path(h.LOCKFILE[client])), f"{client} wrote no lockfile")
        except BaseException:
            h.record(client=client, prefix=prefix, mode="online", result="FAIL")
            raise
        h.record(client=client, prefix=prefix, mode="online", result="pass")

    @classmethod
    def build_mirror(cls):
        """sync (one lockfile per client) -> export -> import -> serve offline on the same port."""
        if cls.mirror:
            return cls.mirror
        inputs = []
        for client, prefix in SYNC_FROM.items():
            work = cls.works.get((client, prefix))
            if work is None:
                continue
            src = work.path(h.LOCKFILE[client])
            dst_dir = tempfile.mkdtemp(prefix=f"sync-{client}-")
            shutil.copy(src, os.path.join(dst_dir, h.LOCKFILE[client]))
            inputs.append(os.path.join(dst_dir, h.LOCKFILE[client]))
        if not inputs:
            raise AssertionError("no online lockfiles to sync from")
        syncer = h.Packrat(upstream=cls.fake.url)
        syncer.run("sync", *inputs, env={"PACKRAT_UPSTREAM_TOKEN": h.ALICE})
        bundle = os.path.join(syncer.tmp, "mirror.tar")
        syncer.run("export", "--out", bundle)
        port = cls.online.port
        cls.online.stop()
        cls.fake.stop()
        mirror = h.Packrat(upstream="http://127.0.0.1:9", config="[cache]\noffline = true\n", port=port)
        mirror.run("import", bundle)
        cls.mirror = mirror.start()
        syncer.cleanup()
        return cls.mirror

    def offline_install(self, client, prefix):
        source = self.works.get((client, prefix))
        if source is None:
            h.record(client=client, prefix=prefix, mode="offline", result="FAIL")
            self.fail(f"the online {client} install at the {prefix} prefix left no lockfile")
        try:
            mirror = self.build_mirror()
            work = h.Workdir(f"offline-{client}-{prefix}")
            self.works[("offline", client, prefix)] = work
            for name in ("package.json", h.LOCKFILE[client], ".npmrc", ".yarnrc.yml", "bunfig.toml"):
                if os.path.exists(source.path(name)):
                    shutil.copy(source.path(name), work.path(name))
            self.assertEqual(mirror.port, self.online.port)
            work.run(h.install_command(client, frozen=True))
            check_node_install(self, work)
        except BaseException:
            h.record(client=client, prefix=prefix, mode="offline", result="FAIL")
            raise
        h.record(client=client, prefix=prefix, mode="offline", result="pass")


for _client in NODE_CLIENTS:
    for _prefix in PREFIXES:

        def _online(self, c=_client, p=_prefix):
            self.online_install(c, p)

        def _offline(self, c=_client, p=_prefix):
            self.offline_install(c, p)

        setattr(NodeClients, f"test_1_online_{_client}_{_prefix}", _online)
        setattr(NodeClients, f"test_2_offline_{_client}_{_prefix}", _offline)


GO_PREFIXES = {
    # GOPROXY lists: the go command falls through a 404 to the next entry.
    "project": lambda base: f"{base}/api/v4/projects/44/packages/go,{base}/api/v4/projects/8/packages/go,off",
    "project-path": lambda base: f"{base}/api/v4/projects/acme%2Fgomods/packages/go,{base}/api/v4/projects/pub%2Fgomods/packages/go,off",
    "instance": lambda base: f"{base}/go,off",
}


class GoClient(unittest.TestCase):
    """go mod tidy/build online (https, .netrc), then go mod download/build offline."""

    @classmethod
    def setUpClass(cls):
        cls.go = h.require("go")
        cls.tls = h.Tls()
        cls.fake = h.Fake()
        cls.online = h.Packrat(upstream=cls.fake.url, tls=cls.tls, config=f'[go]\nhost = "{h.GO_HOST}"\n').start()
        cls.works = {}
        cls.mirror = None

    @classmethod
    def tearDownClass(cls):
        for p in (cls.online, cls.mirror):
            if p:
                p.cleanup()
        cls.fake.stop()
        for w in cls.works.values():
            w.cleanup()

    def go_env(self, work, base):
        netrc = f"machine 127.0.0.1 login me password {h.ALICE}\n"
        return h.go_env(work, self.goproxy(base), netrc=netrc, ca=self.tls.cert)

    goproxy = None

    def online_build(self, prefix):
        work = h.Workdir(f"go-{prefix}")
        self.works[prefix] = work
        work.write("go.mod", GO_MOD)
        work.write("main.go", GO_MAIN)
        env = h.go_env(work, GO_PREFIXES[prefix](self.online.url), netrc=f"machine 127.0.0.1 login me password {h.ALICE}\n", ca=self.tls.cert)
        try:
            work.run([self.go, "mod", "tidy"], env=env)
            out = work.run([self.go, "run", "."], env=env)
            self.assertIn("v1.1.0", out.stdout)
            self.assertIn("go.sum", os.listdir(work.dir))
        except BaseException:
            h.record(client="go", prefix=prefix, mode="online", result="FAIL")
            raise
        h.record(client="go", prefix=prefix, mode="online", result="pass")

    @classmethod
    def build_mirror(cls):
        if cls.mirror:
            return cls.mirror
        source = cls.works.get("project")
        if source is None:
            raise AssertionError("the online go build at the project prefix left no go.mod/go.sum")
        syncer = h.Packrat(upstream=cls.fake.url, config=f'[go]\nhost = "{h.GO_HOST}"\n')
        syncer.run("sync", source.path("go.mod"), env={"PACKRAT_UPSTREAM_TOKEN": h.ALICE})
        bundle = os.path.join(syncer.tmp, "mirror.tar")
        syncer.run("export", "--out", bundle)
        port = cls.online.port
        cls.online.stop()
        cls.fake.stop()
        mirror = h.Packrat(
            config=f'[cache]\noffline = true\n\n[go]\nhost = "{h.GO_HOST}"\n', port=port, tls=cls.tls
        )
        mirror.run("import", bundle)
        cls.mirror = mirror.start()
        syncer.cleanup()
        return cls.mirror

    def offline_build(self, prefix):
        source = self.works.get(prefix)
        if source is None:
            h.record(client="go", prefix=prefix, mode="offline", result="FAIL")
            self.fail(f"the online go build at the {prefix} prefix left no go.sum")
        try:
            mirror = self.build_mirror()
            work = h.Workdir(f"go-offline-{prefix}")
            self.works["offline-" + prefix] = work
            for name in ("go.mod", "go.sum", "main.go"):
                shutil.copy(source.path(name), work.path(name))
            env = h.go_env(work, GO_PREFIXES[prefix](mirror.url), netrc=f"machine 127.0.0.1 login me password {h.ALICE}\n", ca=self.tls.cert)
            env["GOFLAGS"] = "-mod=readonly -modcacherw"
            work.run([self.go, "mod", "download"], env=env)
            out = work.run([self.go, "run", "."], env=env)
            self.assertIn("v1.1.0", out.stdout)
        except BaseException:
            h.record(client="go", prefix=prefix, mode="offline", result="FAIL")
            raise
        h.record(client="go", prefix=prefix, mode="offline", result="pass")


for _prefix in GO_PREFIXES:

    def _go_online(self, p=_prefix):
        self.online_build(p)

    def _go_offline(self, p=_prefix):
        self.offline_build(p)

    setattr(GoClient, f"test_1_online_{_prefix.replace('-', '_')}", _go_online)
    setattr(GoClient, f"test_2_offline_{_prefix.replace('-', '_')}", _go_offline)


if __name__ == "__main__":
    unittest.main()
