"""`vouchnet sim`: EigenTrust's threat models against four provider-choice variants.

A seeded, discrete-round simulator of N peers that runs the node's own trust/ and policy/
objects over an in-memory transport (docs/evaluation.md has the method and the results):

    from overlay.sim import SimConfig, run
    result = run(SimConfig(model="B", malicious=0.4, seed=1))
    result["variants"]["vouchnet"]["frac_inauthentic"]
"""
from overlay.sim.config import MODELS, SWEEP_FRACTIONS, VARIANTS, SimConfig
from overlay.sim.runner import run, sweep

__all__ = ["MODELS", "SWEEP_FRACTIONS", "SimConfig", "VARIANTS", "run", "sweep"]
