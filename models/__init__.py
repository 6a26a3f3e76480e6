"""Online behaviour segmentation: features, clustering, stable naming, snapshots, drift.

Pure code: no Kafka, Redis or Faust import (ruff TID251 enforces it, see models/ruff.toml).
"""
