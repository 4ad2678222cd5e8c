"""Package version, single source for setup.cfg and the run file, and the run-file format.

``analysis`` may not import ``sim``, so ``analysis/_read.py`` keeps its own copy of the
format name and version; a test checks that the two agree.
"""
__version__ = "0.1.0"

FORMAT = "sgdsim-run"   # root attribute `format` of every run file (SPEC 5)
FORMAT_VERSION = 1      # root attribute `format_version`
