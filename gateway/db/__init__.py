"""Database layer: models, engines, migrations."""
