"""The PRIORS block: the one place a statistician edits the priors, read by both model files
(models/gram_pyro.py and models/gram_numpyro.py) and recorded in every run's config.json.

Resolution (the same for the CLI, the Python API and both backends): a fit uses this block;
`--set priors.FIELD=VALUE` (or `GramConfig.priors`) changes single fields on top of it; a resumed
run keeps the priors recorded in its config.json. `gram fit` prints the priors in force at start.
Every run folder keeps a copy of this file (priors.py); resuming after an edit is refused unless
forced, like an edit of the model file.

The whole prior over a trajectory, with these fields:
    z_0 = (h_0, l_0) ~ Normal(0, init_scale² I)        drawn once per model (seed fit.seed), then fixed
    ε_t | u_t ~ family(μ_θ(u_t), σ_θ(u_t))             per token and channel (df for studentt)
    with rank r > 0 (normal only), in the transitions where the guide acts:
             ε_t | u_t ~ N(μ_θ(u_t), diag σ_θ(u_t)² + W Wᵀ) over the flattened L·D entries,
             W (L·D, r) learned and shared by every input (small random start):
             ε = μ + W z + σ ξ with z ~ N(0, I_r) shared by all positions, so a few correlated
             directions may be wider than σ (models/lowrank_pyro.py); `gram refit-prior` fits W
             to the guide after training
    with components K > 1 (and rank r), there a mixture of K such Gaussians:
             ε_t | u_t ~ Σ_k π_k N(μ_θ(u_t) + o_k, diag σ_θ(u_t)² + W_k W_kᵀ),
             offsets o_k (L·D), directions W_k (L·D, r), π = softmax(logits), all shared by every
             input (models/lowrank_pyro.MixtureNoise; its KL by one Monte Carlo sample);
             `gram refit-prior --rank r --components K` fits them to the guide after training (EM)
    μ_θ(u) = W_μ · SwiGLU(u)                           starts at 0 (zero-initialised output layer)
    σ_θ(u) = exp(log min_scale + (log max_scale − log min_scale) · sigmoid(r_θ(u) + b)),
             b chosen so that σ starts at `scale`      scale_mode "network" (r_θ a SwiGLU head),
             "learned" (r_θ one scalar), "fixed" (σ = scale)
The maps μ_θ, r_θ are gram_ppl/networks/torch_nets.Guidance and its flax twin (flax_nets.Guidance);
the densities are drawn in the model files (noise_dist).
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
    rank=0,  # low-rank covariance directions of ε_t over all positions and channels (normal only); 0: diagonal
    components=1,  # K > 1: a mixture of K such low-rank Gaussians (needs rank >= 1); 1: one Gaussian
)
