# -*- coding: utf-8 -*-
# The options every containai.cai module takes to find and point cai (see module_utils/cai.py).

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  cai_path:
    description:
      - Path of the C(cai) binary; by default C(cai) on C(PATH).
    type: path
  cai_root:
    description:
      - Passed as C(--root); for tests against a private tree.
    type: path
  cai_config:
    description:
      - Passed as C(--config); a site configuration other than C(/etc/containai/config.toml).
    type: path
"""
