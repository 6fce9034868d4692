"""Entry point for ``kopf run examples/kopf-operator/main.py`` (knobs from the environment).

KUBECONFIG=~/.kube/config kopf run --standalone --namespace shop examples/kopf-operator/main.py
"""

import sys
from pathlib import Path

import kopf

sys.path.insert(0, str(Path(__file__).resolve().parent))

from canary_operator import Options, register

register(kopf.get_default_registry(), Options.from_env())
