"""The version lifecycle: reading, publishing, producing, joins, alignment, drift, composites and gates.

Each module is a collaborator the store wires together; none calls back into the store.
"""
