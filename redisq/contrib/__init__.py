"""Optional integrations; each module needs its extra (see setup.cfg)."""
