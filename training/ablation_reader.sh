#!/usr/bin/env bash
# Issue 19: judges and the equal-budget ablation (MSE; + RL −DTW; + RL with the reader) on the
# rebuilt corpus (body depth 60, repaired recordings). Idempotent and resumable: a finished step is
# skipped, an interrupted one continues from its checkpoint. Every job: nice 5, one torch thread,
# logs under runs/. Run from the repository root, after `signstream data build --out data/corpus`.
#
#   training/ablation_reader.sh judges     # the evaluation judge and the reward judge (in parallel)
#   training/ablation_reader.sh arm NAME   # NAME: mse, rl_dtw, rl_reader (rl_reader needs runs/judge-reward)
#   training/ablation_reader.sh eval NAME [PER_LANGUAGE]   # NAME also: default; DTW + both judges' readings
#                                          → runs/eval-NAME-PER_LANGUAGE.json (0: the whole test split)
#
# Budgets are in the configs (training/configs/ft_*.toml: budget_cpu_minutes); to train longer,
# raise budget_cpu_minutes in runs/ft-NAME/config.toml and run `arm NAME` again (it resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SS="nice -n 5 .venv/bin/signstream"
LM=training/checkpoints/judge/lm
mkdir -p runs

judge() {  # judge NAME CONFIG
    if [[ -f runs/judge-$1/judge.json ]]; then echo "runs/judge-$1: done"; return; fi
    $SS backtranslate train --config "$2" --out "runs/judge-$1" --lm "$LM" --resume --quiet > "runs/judge-$1.log" 2>&1
}

case "${1:-}" in
    judges)
        judge eval training/configs/judge_eval.toml &
        judge reward training/configs/judge_reward.toml &
        wait ;;
    arm)
        name=$2; run=runs/ft-${name//_/-}
        config=training/configs/ft_$name.toml
        [[ -f $run/config.toml ]] && config=$run/config.toml  # a resumed run keeps its own (possibly raised) budget
        $SS train --config "$config" --out "$run" --no-progress > "$run.log" 2>&1 ;;
    eval)
        name=$2; per=${3:-0}
        je=runs/judge-eval; [[ -f $je/judge.json ]] || je=training/checkpoints/judge-eval      # committed copies
        jr=runs/judge-reward; [[ -f $jr/judge.json ]] || jr=training/checkpoints/judge-reward  # of the same judges
        case $name in
            default) ckpt=training/checkpoints/default ;;
            *) ckpt=runs/ft-${name//_/-}/best ;;
        esac
        $SS eval --checkpoint "$ckpt" --corpus data/corpus --split test --per-language "$per" --baseline \
            --backtranslate --judge "$je" --other-judge "$jr" --json \
            > "runs/eval-$name-$per.json" 2> "runs/eval-$name-$per.log" ;;
    *) sed -n 2,13p "$0"; exit 2 ;;
esac
