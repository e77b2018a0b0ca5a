"""Flask extensions, created unbound here and bound to the app in `create_app`, so any
module can use them without importing the app factory."""

from __future__ import annotations

from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
