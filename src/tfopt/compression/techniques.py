"""Every compression technique, registered: importing this module imports each technique
module named in ``tfopt.registry.TECHNIQUE_MODULES`` (each registers itself) and checks
the registry is whole (unique variants, bases before what derives from them).

Import it before asking ``tfopt.registry`` for techniques or variants.
"""

import importlib

from tfopt import registry

for _module in registry.TECHNIQUE_MODULES.values():
    importlib.import_module(f"tfopt.compression.{_module}")
registry.check_complete()
