"""End-to-end test support: a real local Kubernetes control plane (see e2e/cluster.py)."""
