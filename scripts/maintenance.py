#!/usr/bin/env python3
"""Maintain the AllyNet database (see `python scripts/maintenance.py --help`).

A thin command line over `allynet.maintenance`, which `flask maintenance` shares.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from allynet.maintenance import main  # noqa: E402

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
