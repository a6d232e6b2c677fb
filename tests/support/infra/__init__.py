"""Offline checks of the Bicep templates in ``infra/``, one module per subject. Each ``check_*``
function returns a list of problems; empty means it passes.
"""
