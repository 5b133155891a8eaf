"""The multi-host fixtures (see tests/scaleout/netns.py) for every test in this folder."""

from tests.scaleout.netns import hosts_fleet, lab, lab_db

__all__ = ["hosts_fleet", "lab", "lab_db"]
