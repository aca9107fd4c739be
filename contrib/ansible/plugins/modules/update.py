#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ContainAI contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: update
short_description: Bring a ContainAI host to the release target of its cai
version_added: "0.1.0"
description:
  - Runs C(cai update --json) on the host, which brings sysbox, the dockerd bundle, the engine
    unit and its daemon.json to the release target pinned in the installed C(cai).
  - A host that is already current reports C(ok) and its containers are not touched.
  - In check mode runs C(cai update --dry-run --json) and reports C(changed) from the plan;
    nothing on the host changes.
  - With C(--diff) shows the engine unit and daemon.json diffs the update writes.
  - When containers run and I(stop_containers) is false, C(cai) refuses (exit code 2) and the
    task fails naming the containers; it never reports C(ok) for a host it did not update.
  - A failed update is rolled back by C(cai) itself; the task fails with the rollback's account.
  - Exit codes and the C(--json) document are described in docs/json.md of the cai repository.
author:
  - ContainAI contributors
options:
  state:
    description:
      - C(latest) brings the host to this C(cai)'s release target.
    type: str
    choices: [latest]
    default: latest
  stop_containers:
    description:
      - Stop the running containers for the update and start them again afterwards
        (C(cai update --stop-containers)).
      - When false and containers run, the task fails with their names.
    type: bool
    default: false
  no_restart:
    description:
      - Leave the stopped containers stopped after the update (C(--no-restart)).
    type: bool
    default: false
  require_rollback:
    description:
      - Refuse the update when something could not be restored by a rollback
        (C(--require-rollback)).
    type: bool
    default: false
extends_documentation_fragment:
  - containai.cai.cai
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Needs root on the host (C(become=true)), as C(cai update) does.
seealso:
  - module: containai.cai.doctor
  - module: containai.cai.facts
"""

EXAMPLES = r"""
- name: Update the host, stopping and restarting its agents
  containai.cai.update:
    state: latest
    stop_containers: true
  become: true

- name: What would change (check mode), with the unit and daemon.json diffs
  containai.cai.update:
    stop_containers: true
  check_mode: true
  diff: true
  register: plan
"""

RETURN = r"""
versions:
  description: Installed versions of sysbox and dockerd before and after (predicted in check mode).
  returned: always
  type: dict
  sample: {"before": {"sysbox": "0.6.7+containai.20251201", "dockerd": null},
           "after": {"sysbox": "0.6.7+containai.20260127", "dockerd": "28.2.2"}}
target:
  description: The release target of this C(cai).
  returned: always
  type: dict
  sample: {"sysbox": "0.6.7+containai.20260127", "dockerd": "28.2.2"}
updates:
  description: What needed updating, one record per component (unit, config, dockerd, sysbox).
  returned: always
  type: list
  elements: dict
  sample: [{"component": "dockerd", "installed": "none", "target": "28.2.2", "reason": "bundle missing"}]
plan:
  description: The C(update) report of the C(--json) document (updates, containers, rollback); null when the host was current.
  returned: always
  type: dict
containers_stopped:
  description: Containers the update stopped (would stop, in check mode).
  returned: always
  type: list
  elements: str
containers_restarted:
  description: Of those, the ones running again after the update.
  returned: always
  type: list
  elements: str
rollback:
  description: The rollback's account after a failed update (restored, missing, running, not_running, complete).
  returned: when the update failed and was rolled back
  type: dict
containers:
  description: The containers that blocked the update.
  returned: when cai refused because containers run
  type: list
  elements: str
document:
  description: The whole C(--json) document of the run.
  returned: always
  type: dict
rc:
  description: Exit code of C(cai update).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.containai.cai.plugins.module_utils.cai import (
    COMMON_ARGS,
    EXIT_OK,
    EXIT_REFUSED,
    error_text,
    facts,
    report,
    run_json,
)

# Plan and journal actions whose details carry a unified diff of a file the update writes.
DIFF_KINDS = ("units.install", "dockerd.install_config")


def diffs(actions):
    out = []
    for a in actions or []:
        details = a.get("details") or {}
        if a.get("kind") in DIFF_KINDS and details.get("diff"):
            out.append({
                "before_header": a.get("target"),
                "after_header": a.get("target"),
                "prepared": details["diff"],
            })
    return out


def main():
    argument_spec = dict(
        state=dict(type="str", default="latest", choices=["latest"]),
        stop_containers=dict(type="bool", default=False),
        no_restart=dict(type="bool", default=False),
        require_rollback=dict(type="bool", default=False),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    before = facts(module)
    args = ["update", "--json"]
    if module.check_mode:
        args.append("--dry-run")
    if module.params["stop_containers"]:
        args.append("--stop-containers")
    if module.params["no_restart"]:
        args.append("--no-restart")
    if module.params["require_rollback"]:
        args.append("--require-rollback")
    rc, doc, err = run_json(module, args)

    plan = report(doc, "update")
    updates = (plan or {}).get("updates") or []
    result = dict(
        changed=False,
        rc=rc,
        document=doc,
        plan=plan,
        updates=updates,
        target=before.get("target"),
        containers_stopped=[],
        containers_restarted=[],
        versions=dict(before=before.get("versions"), after=before.get("versions")),
    )

    refusal = doc.get("refusal")
    if refusal or rc == EXIT_REFUSED:
        refusal = refusal or {}
        names = refusal.get("containers") or []
        msg = refusal.get("message") or error_text(doc, err)
        if names and not all(n in msg for n in names):
            msg = "%s (containers: %s)" % (msg, ", ".join(names))
        module.fail_json(msg=msg, help=refusal.get("help"), containers=names, **result)
    if rc != EXIT_OK or doc.get("error"):
        rollback = report(doc, "rollback")
        msg = "cai update failed: %s" % error_text(doc, err)
        if rollback is not None:
            result["rollback"] = rollback
            msg += "; rolled back (%s)" % ("complete" if rollback.get("complete") else
                                          "incomplete: %s" % "; ".join(rollback.get("missing") or []
                                                                        + ["not running: %s" % n for n in rollback.get("not_running") or []]))
        module.fail_json(msg=msg, **result)

    if updates:
        result["changed"] = True
        containers = (plan or {}).get("containers") or {}
        stopped = list(containers.get("managed") or []) + list(containers.get("unmanaged") or [])
        result["containers_stopped"] = stopped
        if module.check_mode:
            after = dict(before.get("versions") or {})
            for u in updates:
                if u.get("component") in ("sysbox", "dockerd"):
                    after[u["component"]] = u.get("target")
            result["versions"]["after"] = after
            if not module.params["no_restart"]:
                result["containers_restarted"] = stopped
            if module._diff:
                result["diff"] = diffs(doc.get("plan"))
        else:
            now = facts(module)
            result["versions"]["after"] = now.get("versions")
            running = set(now.get("running") or [])
            result["containers_restarted"] = [n for n in stopped if n in running]
            if module._diff:
                result["diff"] = diffs(doc.get("journal"))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
