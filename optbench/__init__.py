"""optbench: SGD vs Adam, batch size and learning rate, measured from a Snakemake grid of runs."""
