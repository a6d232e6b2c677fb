"""Snapshot of Azure's published Bicep type definitions for the resource types ``infra/`` uses.

``python -m tools.bicep_types regenerate <bicep-types-az checkout>`` rewrites
``tests/data/bicep-types/``; ``latest`` lists the newest stable API version of each type.
The type check in ``make test`` reads that snapshot, so it runs offline.
"""
