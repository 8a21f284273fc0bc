"""The one library every NomadNexus function uses.

Modules are imported individually by each function so that a function pays
the import cost of only what it calls (see bench/).
"""
