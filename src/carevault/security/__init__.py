"""CareVault's AI security layer: events, features, anomaly detectors, the risk ensemble and the
graduated responses. Plain Python and scikit-learn: no Django here (the web layer feeds events
in and implements the response sink)."""
