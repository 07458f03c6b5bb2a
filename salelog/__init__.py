"""The transparency log of each sale (docs/design.md, "The transparency log").

The sales scripts sequence every attempt and join they judge into the sale's ``:log``
stream; this app moves the entries into PostgreSQL exactly once, builds the RFC 9162 Merkle
tree over them (``core.merkle``), signs a checkpoint (a C2SP signed note) at least once a
second while entries arrive, freezes the log after the sale, and serves checkpoints,
entries and proofs. ``salelog/verify.py`` is the verifier anyone can run: one file, no
import of this project.
"""
