"""CareVault: a clinical records platform that is secure by design."""

__version__ = "0.1.0"
