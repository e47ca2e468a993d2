# Analyses of the run tables and the claims' verdicts, each by the rule declared in config `verdicts`.


ANALYSIS_INPUTS = {"runs": "results/tables/runs.csv", "status": "results/tables/run_status.csv"}
# Probes are opt-in: without them C4/C5 are inconclusive and C6 has no B_simple.
if config["grad_variance"]["probes"]:
    ANALYSIS_INPUTS.update(gradvar="results/tables/gradvar.csv", gradvar_slopes="results/tables/gradvar_slopes.csv")


rule analyze:
    input:
        **ANALYSIS_INPUTS,
    output:
        lr_scores="results/tables/lr_scores.csv",
        best_lr="results/tables/best_lr.csv",
        lr_sensitivity="results/tables/lr_sensitivity.csv",
        scaling="results/tables/scaling.csv",
        trajectories="results/tables/trajectories.csv",
        steps_to_target="results/tables/steps_to_target.csv",
        early_stopping="results/tables/early_stopping.csv",
        claims="results/tables/claims.csv",
        claims_json="results/tables/claims.json",
    params:
        # Part of the job's identity: changing a rule or an analysis setting reruns the verdicts.
        settings={k: config[k] for k in ("analysis", "verdicts", "selection")},
    log:
        "logs/analyze.log",
    conda:
        ENV
    script:
        "../../scripts/analyze.py"
