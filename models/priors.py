"""The PRIORS block: the one place a statistician edits the priors, read by both model files
(models/gram_pyro.py and models/gram_numpyro.py) and recorded in every run's config.json.

Resolution (the same for the CLI, the Python API and both backends): a fit uses this block;
`--set priors.FIELD=VALUE` (or `GramConfig.priors`) changes single fields on top of it; a resumed
run keeps the priors recorded in its config.json. `gram fit` prints the priors in force at start.
"""

from gram_ppl.config import PriorConfig

# ---- PRIORS: edit here -----------------------------------------------------------------------
PRIORS = PriorConfig(
    family="normal",  # transition noise ε_t: normal | studentt | laplace
    scale_mode="network",  # σ: network = σ_θ(u_t) per token (paper) | learned = one scale | fixed = constant
    scale=0.1,  # the fixed scale, or where learned / network scales start
    min_scale=1e-3,  # σ never goes below this
    max_scale=1.0,  # σ never goes above this
    df=4.0,  # degrees of freedom of the studentt family
    init_scale=1.0,  # z_0 = (h_0, l_0) ~ N(0, init_scale² I), drawn once per model
)
