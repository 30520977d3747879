"""``vigilctl import-keepalived``: keepalived.conf in, vigil.yml out, nothing dropped silently.

``parser`` reads keepalived's syntax (includes, quoting), ``convert`` is the frame that
walks it and hands each block to the subsystem that owns it, ``cli`` validates the result
with vigil's own schema and renders YAML.
"""

from vigil.keepalived.cli import import_main, render_yaml, validation_errors
from vigil.keepalived.convert import ImportResult, Unsupported, import_keepalived
from vigil.keepalived.parser import KeepalivedParseError

__all__ = [
    "ImportResult",
    "KeepalivedParseError",
    "Unsupported",
    "import_keepalived",
    "import_main",
    "render_yaml",
    "validation_errors",
]
