"""Small shared utilities: optional-dependency checks, hashing, seeding."""
from embodied_vision.utils.import_utils import (
    is_available,
    missing_extra_message,
    require_package,
)

__all__ = ['is_available', 'missing_extra_message', 'require_package']
