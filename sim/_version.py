"""Package version, single source for setup.cfg and the run file."""
__version__ = "0.1.0"
