#!/usr/bin/env bash
# Flow anti-annealing slope sweep on the shipped default (2026-12-04, flow_slope_h200.json):
# sampler_sweep.sh over --flow-slope (CSP on val at seeds 0 and 1, de novo at seeds 0-2, 150 s on
# one H200). The rule it was judged by: benchmarks/ablations/flow_slope_rule.txt. From the
# repository root, carrying .whl and .devdata:   DEADLINE=480 bash benchmarks/device/flow_slope.sh
OPT=--flow-slope VALUES=${SLOPES:-"0 2.5 5 10"} NAME=slope exec bash benchmarks/device/sampler_sweep.sh
