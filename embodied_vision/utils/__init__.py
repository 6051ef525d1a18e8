"""Small shared utilities: optional-dependency checks, hashing, seeding."""
from embodied_vision.utils.import_utils import is_available, require_package

__all__ = ['is_available', 'require_package']
