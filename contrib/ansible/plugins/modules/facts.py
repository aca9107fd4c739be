#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ContainAI contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: facts
short_description: Facts about a ContainAI host
version_added: "0.1.0"
description:
  - Sets C(ansible_facts.containai), also reachable as the C(containai) variable, with the platform,
    architecture, the engine status, the installed sysbox and dockerd versions, the release
    target of this C(cai), the managed containers (running or stopped) and the names of
    every running container, managed or not (C(running)).
  - Runs a read-only script with C(cai run --dry-run --json); never changes the host.
author:
  - ContainAI contributors
options: {}
extends_documentation_fragment:
  - containai.cai.cai
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
seealso:
  - module: containai.cai.update
  - module: containai.cai.doctor
"""

EXAMPLES = r"""
- name: Read the ContainAI facts
  containai.cai.facts:

- name: Hosts behind their target
  ansible.builtin.debug:
    msg: "sysbox {{ containai.versions.sysbox }} -> {{ containai.target.sysbox }}"
  when: containai.versions.sysbox != containai.target.sysbox
"""

RETURN = r"""
ansible_facts:
  description: Facts under the C(containai) key.
  returned: always
  type: complex
  contains:
    containai:
      description: The host's facts.
      returned: always
      type: dict
      sample:
        platform: linux
        arch: amd64
        engine: {"present": true, "reachable": true, "version": "28.2.2", "socket": "/var/run/containai-docker.sock"}
        versions: {"sysbox": "0.6.7+containai.20260127", "dockerd": "28.2.2"}
        target: {"sysbox": "0.6.7+containai.20260127", "dockerd": "28.2.2"}
        containers: [{"name": "agent-1", "running": true, "state": "running"}]
        running: ["agent-1"]
        containers_error: null
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.containai.cai.plugins.module_utils.cai import COMMON_ARGS, facts


def main():
    module = AnsibleModule(argument_spec=dict(COMMON_ARGS), supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts=dict(containai=facts(module)))


if __name__ == "__main__":
    main()
