"""Unit tests import module_utils directly: they need no Ansible run and no cluster."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "module_utils"))
