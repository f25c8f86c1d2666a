"""Plain HTML pages for members and auditors, served by the gateway (see docs/pages.md)."""
