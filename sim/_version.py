"""Package version, single source for setup.cfg and the run file, and the run-file format.

``analysis`` may not import ``sim``, so ``analysis/_read.py`` keeps its own copy of the
format name and version; a test checks that the two agree.
"""
__version__ = "0.1.0"

FORMAT = "sgdsim-run"   # root attribute `format` of every run file (SPEC 5)
FORMAT_VERSION = 2      # root attribute `format_version` (2: the counter layout of SPEC 6)


def other_format(version):
    """Why a file of another format version cannot be continued or merged."""
    return (f"is format version {version!r}, this sgdsim writes {FORMAT_VERSION}: its random "
            f"numbers follow another counter layout (docs/SPEC.md section 6); run it again")
