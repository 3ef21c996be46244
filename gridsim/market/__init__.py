"""Token packages and model mixes: what carriers sell, turned into the engines' classes.

``expand`` (``gridsim.market.expand``) turns a scenario's market plans and class model mixes
into plain classes, one per (class, model, tier), each with one model, a priority and a weight
schedule; ``gridsim.market.plans`` holds the plans' arithmetic (demand, quota, breakage,
revenue); ``gridsim.market.outputs`` reads a run's tables back per plan, model and tier.
"""
