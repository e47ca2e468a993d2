# Materialise the dataset once as tensors: train/evaluate jobs then import no torchvision or mnist1d.


rule prepare_data:
    output:
        DATA,
    log:
        f"logs/prepare_data/{data_tag(config)}.log",
    conda:
        ENV
    params:
        # the data code's identity (optbench.identity): a change of what the code does rebuilds the data
        code=CODE["data"],
    script:
        "../../scripts/prepare_data.py"
