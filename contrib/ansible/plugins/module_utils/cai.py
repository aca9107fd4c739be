# -*- coding: utf-8 -*-
# Copyright: ContainAI contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Shared code of the containai.cai modules: finding cai, running it with --json, and reading
the one document it prints (docs/json.md in the cai repository describes it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

# The --json document versions these modules understand (the `schema` field).
SCHEMAS = (1,)

# Exit codes (docs/json.md): the modules decide from the document, the code only confirms it.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_REFUSED = 2
EXIT_UPDATES_AVAILABLE = 100

# Options every module takes.
COMMON_ARGS = dict(
    cai_path=dict(type="path"),
    cai_root=dict(type="path"),
    cai_config=dict(type="path"),
)

# Read-only facts for containai.cai.facts and the versions before/after of containai.cai.update,
# run with `cai run FILE --dry-run --json`: nothing it calls changes the host.
FACTS_SCRIPT = r"""//! version: 1.0.0
//! api: 1.10
//
// Facts for the containai.cai Ansible collection; read-only.
let engine = containers::engine_status();
let sysbox = ();
try {
    let v = sysbox::installed_version();
    sysbox = if v == () { () } else { v.full };
} catch (e) {
    sysbox = #{ error: `${e}` };
}
let dockerd = ();
try {
    dockerd = dockerd::installed();
} catch (e) {
    dockerd = #{ error: `${e}` };
}
let target = release::target();
let managed = [];
let managed_error = ();
try {
    managed = containers::list_managed(true).map(|c| #{ id: c.id, name: c.name, image: c.image,
        state: c.state, running: c.running, managed_by: c.managed_by });
} catch (e) {
    managed_error = `${e}`;
}
// Every running container, managed or not, by name: an engine restart stops them all.
let running = [];
try {
    running = containers::list(false).map(|c| c.name);
} catch (e) {
    if managed_error == () { managed_error = `${e}`; }
}
report::data(#{ facts: #{
    platform: platform::detect(),
    arch: platform::arch(),
    engine: engine,
    versions: #{ sysbox: sysbox, dockerd: dockerd },
    target: #{ sysbox: target.sysbox.version, dockerd: target.dockerd.version },
    containers: managed,
    running: running,
    containers_error: managed_error,
} });
"""


def find_cai(module):
    """The cai binary: cai_path, else cai on PATH (and the sbin directories root uses)."""
    path = module.params.get("cai_path")
    if path:
        if not os.access(path, os.X_OK):
            module.fail_json(msg="cai_path %s is not an executable file" % path)
        return path
    found = module.get_bin_path("cai", required=False, opt_dirs=["/usr/local/bin", "/usr/local/sbin"])
    if not found:
        module.fail_json(
            msg="cai is not installed on this host (not on PATH)",
            help="install it with the containai.cai.host role, or set cai_path",
        )
    return found


def base_argv(module):
    argv = [find_cai(module)]
    if module.params.get("cai_root"):
        argv += ["--root", module.params["cai_root"]]
    if module.params.get("cai_config"):
        argv += ["--config", module.params["cai_config"]]
    return argv


def run_json(module, args):
    """Runs `cai [--root R] [--config C] ARGS` (ARGS include --json) and returns
    (exit code, document, stderr). A run that printed no document fails the task."""
    argv = base_argv(module) + list(args)
    rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C.UTF-8"})
    try:
        doc = json.loads(out)
    except ValueError:
        module.fail_json(
            msg="cai printed no --json document (exit code %d): %s" % (rc, (err or out).strip()[-2000:]),
            rc=rc, cmd=argv, stderr=err,
        )
    if not isinstance(doc, dict) or doc.get("schema") not in SCHEMAS:
        module.fail_json(
            msg="cai printed a --json document of schema %r; this collection reads schema %s"
            % (doc.get("schema") if isinstance(doc, dict) else None, ", ".join(str(s) for s in SCHEMAS)),
            help="use the collection that ships with this cai release",
            rc=rc, cmd=argv,
        )
    return rc, doc, err


def report(doc, key):
    """The last value under KEY in the document's reports, or None."""
    found = None
    for r in doc.get("reports") or []:
        if isinstance(r, dict) and key in r:
            found = r[key]
    return found


def facts(module):
    """The facts the bundled read-only script reports."""
    path = os.path.join(module.tmpdir, "containai-facts.rhai")
    with open(path, "w") as f:
        f.write(FACTS_SCRIPT)
    os.chmod(path, 0o644)
    rc, doc, err = run_json(module, ["run", "--dry-run", "--json", path])
    found = report(doc, "facts")
    if rc != 0 or found is None:
        module.fail_json(msg="cai could not read this host's facts: %s" % (doc.get("error") or err.strip()),
                         rc=rc, document=doc)
    return found


def error_text(doc, err):
    """The reason a run gives: the document's error, else the last error lines on stderr."""
    if doc.get("error"):
        return doc["error"]
    lines = [line[len("error: "):] for line in (err or "").splitlines() if line.startswith("error: ")]
    return "; ".join(lines) if lines else (err or "").strip()[-2000:]
