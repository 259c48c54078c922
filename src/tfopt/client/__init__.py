"""Client layer: run, submit and schedule pipelines (the only library code besides cli/ that
imports kfp).
"""
