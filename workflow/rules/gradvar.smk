# Gradient noise at the checkpoints of the probe runs (config grad_variance.probes): σ², ||∇f||² and
# the K draws of ||g_B − ∇f||² per m, and at a few of them GᵀHG and eᵀHe (grad_variance.hessian), raw;
# one job per probe run, then one table each. Every statistic of them (CIs against σ²/m, z, slopes,
# B_simple, the Hessian B_noise) is the analysis stage's (rule analyze).
PROBE_DIR = f"results/gradvar/{EXP}/{GROUP}/seed{{seed}}"
PROBE_BENCHMARK = f"benchmarks/grad_variance/{GROUP_LOG}_seed{{seed}}.tsv"
# each probe's wildcard values, to fill PROBE_DIR and PROBE_BENCHMARK
PROBE_WILDCARDS = [probe_wildcards(p) for p in config["grad_variance"]["probes"]]
PROBE_DIRS = [PROBE_DIR.format(**wildcards) for wildcards in PROBE_WILDCARDS]


wildcard_constraints:
    seed=r"\d+",


# Writes moments, draws and layers; with grad_variance.hessian also hessian (GᵀHG per Hessian-probed
# checkpoint) and hessian_draws (eᵀHe per draw).
rule grad_variance:
    input:
        # the data and the train receipt of the run's bundle (common.smk, probe_inputs)
        unpack(probe_inputs),
    output:
        **hessian_outputs(PROBE_DIR),
        moments=f"{PROBE_DIR}/moments.csv",
        draws=f"{PROBE_DIR}/draws.csv",
        layers=f"{PROBE_DIR}/layers.csv",
    log:
        f"logs/grad_variance/{GROUP_LOG}_seed{{seed}}.log",
    benchmark:
        PROBE_BENCHMARK
    # start as soon as the probe's bundle is trained, not after every other job: the probes are long
    priority: 10**7
    # cluster: a bundle's train, evaluate and probe jobs form one SLURM job (profiles/slurm)
    group:
        "runs"
    conda:
        ENV
    threads: config["grad_variance"]["threads"]
    params:
        # Part of the job's identity: changing K, the m list, the checkpoints or the seed reruns the probes.
        settings={k: v for k, v in config["grad_variance"].items() if k != "probes"},
        # the probed run's checkpoints (what else it depends on is in its path: common.smk, PROBE_ID)
        checkpoints=probe_checkpoints,
        device=DEVICE,
    script:
        "../../scripts/grad_variance.py"


rule aggregate_gradvar:
    input:
        **{
            name: [hessian_outputs(d)[name] for d in PROBE_DIRS]
            for name in HESSIAN_TABLES
        },
        moments=[f"{d}/moments.csv" for d in PROBE_DIRS],
        draws=[f"{d}/draws.csv" for d in PROBE_DIRS],
        layers=[f"{d}/layers.csv" for d in PROBE_DIRS],
    output:
        **HESSIAN_TABLES,
        moments="results/tables/probe_moments.csv",
        draws="results/tables/probe_draws.csv",
        layers="results/tables/gradvar_layers.csv",
    log:
        "logs/aggregate_gradvar.log",
    conda:
        ENV
    script:
        "../../scripts/aggregate_gradvar.py"


# Concatenating a few small CSVs: run on the submitting machine, never as a cluster job.
localrules:
    aggregate_gradvar,
