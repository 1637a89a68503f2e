"""Protected diagnosis models (issue 7): the models doctors run, and what keeps them honest.

No Django here. The diagnosis models are trained on the Wisconsin diagnostic breast-cancer data
that ships with scikit-learn (:mod:`.dataset`, :mod:`.models`); the rest of the package seals
them at rest, serves them (in the clear, homomorphically or among three parties) and defends
them against extraction and poisoning.
"""
