#!/bin/bash
# Download the images listed in ccs_synthetic_filtered_large.tsv (made by convert_cc_sbu.py) as webdataset shards
# (cc_sbu_dataset/{00000..}.tar with KEY.jpg, KEY.json, KEY.txt), resized to 224 px like the published data.
# Run it in the folder that holds the TSV. Tune PROCESSES / THREADS to the machine; WANDB=True logs to wandb.
set -euo pipefail

PROCESSES=${PROCESSES:-16}
THREADS=${THREADS:-128}
WANDB=${WANDB:-False}

img2dataset --url_list ccs_synthetic_filtered_large.tsv --input_format "tsv" \
    --url_col "url" --caption_col "caption" --output_format webdataset \
    --output_folder cc_sbu_dataset --processes_count "$PROCESSES" --thread_count "$THREADS" --image_size 224 \
    --enable_wandb "$WANDB"
