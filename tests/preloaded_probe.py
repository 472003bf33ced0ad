"""Run by tests/test_preloaded.py as ``python -m tests.preloaded_probe``: prints what it sees."""

import json
import sys

if __name__ == "__main__":
    print(json.dumps({"name": __name__, "argv": sys.argv}))
