# Materialise the dataset once as tensors: train/evaluate jobs then import no torchvision or mnist1d.


rule prepare_data:
    output:
        DATA,
    log:
        f"logs/prepare_data/{data_tag(config)}.log",
    conda:
        ENV
    script:
        "../../scripts/prepare_data.py"
