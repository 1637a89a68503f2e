"""The attack lab (issue 14): real attacks against a running CareVault, and a report of what
held and what the AI layer detected.

It attacks the way an attacker would: over HTTP (:mod:`.target`), and, for the at-rest and fault
scenarios, through the database and files an attacker with a stolen copy (or a shell) would hold.
It never imports the server's internals (an import-linter contract keeps it so): what it learns
about detection it reads from the officer's command line (``carevault security activity``).

    carevault attack list
    carevault attack run all --target http://127.0.0.1:8000 [--json FILE] [--html FILE]
    carevault attack lab [--quick]

A scenario is one module in :mod:`carevault.attacklab.scenarios` that defines ``SCENARIO`` (or
``SCENARIOS``): what it attacks, its bounds, what "held" means, and a ``run(ctx)`` that returns
an :class:`~carevault.attacklab.scenario.Outcome`. Adding a scenario is adding a file.
"""
