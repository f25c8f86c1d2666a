"""Old home of the points rules, kept only as an import path (see rules.py here)."""
