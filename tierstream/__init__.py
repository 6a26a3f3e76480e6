"""tierstream: streaming RFM tiers and segments with explained tier-change events."""

__version__ = "0.1.0"
