"""learndet: object detection taught in notebooks, shipped as a library."""
__version__ = "0.1.0"

from .registry import register_all_modules as _register_all_modules

# Every module registers its components when imported; importing them all here means a config can name any
# built-in component (a loss, a pipeline step, a hook) without the user importing its module first.
_register_all_modules(__name__)
