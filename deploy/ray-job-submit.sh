#!/bin/sh
# `gouache batch` as a Ray Job on a running cluster (a `ray start --head` machine, or a KubeRay
# RayCluster with its dashboard port forwarded: kubectl port-forward svc/gouache-head-svc 8265:8265).
# An example, not run by gouache's tests. jobs.jsonl and out/ must be where every node sees them
# (a shared volume): the job's images are written by the Ray workers.
set -eu
ray job submit --address "${RAY_DASHBOARD:-http://127.0.0.1:8265}" \
    --runtime-env-json '{"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}}' \
    -- gouache batch /data/jobs.jsonl --out /data/out --ray auto
