"""Per-peer workload scripts: `python bench/workloads/<peer>.py --workload NAME --n N --reps R`."""
