"""consortia: a permissioned, two-tier consortium blockchain for securities and e-CNY settlement."""

__version__ = "0.1.0"
