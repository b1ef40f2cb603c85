#!/usr/bin/env python3
"""Seed a realistic, reproducible demo city (see `python scripts/seed.py --help`).

A thin command line over `allynet.seeding`, which the ALLYNET_DEMO=1 start-up
loader shares.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from allynet.seeding import main  # noqa: E402

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
