"""The sealed-model store, shared by ``security`` (risk and policy models) and ``modelguard``
(diagnosis models), which are peers and import nothing from each other.

It sits above ``crypto`` (it encrypts, signs and wraps keys) and below both of its users:

* :mod:`~carevault.modelstore.store` -- :class:`ModelStore`: seal, verify and load models
  (skops with a trusted-type list, AES-GCM, Ed25519 manifests, high-water records);
* :mod:`~carevault.modelstore.anchor` -- signed checkpoints outside the model directory (and
  the database) that stop a rollback of the high-water records and of the audit chain's head;
* :mod:`~carevault.modelstore.datadir` -- the store of a data directory, keyed by the
  configured master key.

It imports neither ``security`` nor ``modelguard``: models are known to it by name only.
"""
