"""The web side of the security layer (issue 5): audited actions become security events, the
scorer rates them, incidents collect them, and the graduated responses are carried out here.
The dashboard that shows all of it is :mod:`carevault.web.officer`."""
