"""The work behind the functions: plain Python, no ``azure.functions`` imports.

``function_app.py`` and the local tools (``tools/``) both call into this package.
"""
