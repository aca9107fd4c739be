#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ContainAI contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: doctor
short_description: Health report of a ContainAI host, and the volume ownership repair
version_added: "0.1.0"
description:
  - Runs C(cai doctor --json) and returns every check record as data.
  - Fails when a check is C(error), unless its id is in I(tolerate).
  - With I(repair), first runs the ownership repair C(cai doctor --repair --json) (C(--all), or
    C(--container NAME)); in check mode with C(--dry-run), which changes nothing. The report
    is read afterwards, so it shows the repaired host.
  - The report alone never changes the host and reports C(ok).
  - Exit codes and the C(--json) document are described in docs/json.md of the cai repository.
author:
  - ContainAI contributors
options:
  checks:
    description:
      - Run only these check ids (C(cai doctor --check ID...)); all of them by default.
        C(cai doctor --list-checks) lists the ids.
    type: list
    elements: str
    default: []
  tolerate:
    description:
      - Check ids whose C(error) does not fail the task.
    type: list
    elements: str
    default: []
  repair:
    description:
      - C(all) repairs the ownership of every managed container's named volumes; any other
        value is the name of one container to repair.
    type: str
extends_documentation_fragment:
  - containai.cai.cai
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: containai.cai.update
  - module: containai.cai.facts
"""

EXAMPLES = r"""
- name: Health report; fail on any error except a stale sysbox
  containai.cai.doctor:
    tolerate: [sysbox.target]
  register: health

- name: Show what the repair would change (check mode), then repair
  containai.cai.doctor:
    repair: all
  become: true
"""

RETURN = r"""
checks:
  description: Every check record of C(cai doctor --json) (id, category, status, summary, remediation).
  returned: always
  type: list
  elements: dict
  sample: [{"id": "engine.socket", "category": "engine", "status": "ok", "summary": "engine 28.2.2 answers", "remediation": ""}]
summary:
  description: How many checks ended in each status (ok, warn, error, unknown, skip).
  returned: always
  type: dict
errors:
  description: Ids of the checks whose status is C(error), tolerated ones included.
  returned: always
  type: list
  elements: str
repair:
  description: The C(repair) report of C(cai doctor --repair --json) (dry_run, containers, summary).
  returned: when I(repair) is set
  type: dict
document:
  description: The C(--json) document of the report.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.containai.cai.plugins.module_utils.cai import (
    COMMON_ARGS,
    EXIT_FAILURE,
    EXIT_OK,
    error_text,
    report,
    run_json,
)


def main():
    argument_spec = dict(
        checks=dict(type="list", elements="str", default=[]),
        tolerate=dict(type="list", elements="str", default=[]),
        repair=dict(type="str"),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    result = dict(changed=False)

    target = module.params["repair"]
    if target:
        args = ["doctor", "--repair", "--json"]
        args += ["--all"] if target == "all" else ["--container", target]
        if module.check_mode:
            args.append("--dry-run")
        rc, doc, err = run_json(module, args)
        repaired = report(doc, "repair")
        result["repair"] = repaired
        # A repair that ran reports per volume; exit 1 with that report is a failed volume,
        # whose reason is also the document's error.
        if repaired is None or rc not in (EXIT_OK, EXIT_FAILURE):
            module.fail_json(msg="cai doctor --repair failed: %s" % error_text(doc, err), rc=rc,
                             document=doc, **result)
        summary = repaired.get("summary") or {}
        result["changed"] = (summary.get("repaired") or 0) > 0
        if rc != EXIT_OK or summary.get("failed"):
            module.fail_json(msg="the repair failed for %d volume(s); see repair.containers" % summary.get("failed", 0),
                             rc=rc, document=doc, **result)

    args = ["doctor", "--json"] + ["--check=%s" % c for c in module.params["checks"]]
    rc, doc, err = run_json(module, args)
    found = report(doc, "checks")
    value = None
    for r in doc.get("reports") or []:
        if isinstance(r, dict) and "checks" in r and "summary" in r:
            value = r
    # Exit 1 with a report means a check is `error` (the document's error says which): data
    # for `tolerate` to judge, not a failure of cai.
    if value is None or rc not in (EXIT_OK, EXIT_FAILURE):
        module.fail_json(msg="cai doctor failed: %s" % error_text(doc, err), rc=rc, document=doc,
                         checks=found or [], **result)
    checks = value["checks"]
    errors = [c["id"] for c in checks if c.get("status") == "error"]
    # No `rc`: Ansible marks a result with a non-zero rc failed, and 1 means an error check,
    # which `tolerate` may accept; the document keeps the exit code.
    result.update(checks=checks, summary=value.get("summary"), errors=errors, document=doc)
    failing = [c for c in checks if c.get("status") == "error" and c["id"] not in module.params["tolerate"]]
    if failing:
        module.fail_json(
            msg="cai doctor: %s" % "; ".join("%s: %s" % (c["id"], c.get("summary")) for c in failing),
            help=[c.get("remediation") for c in failing if c.get("remediation")],
            **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
