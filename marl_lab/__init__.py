"""marl-lab: the `marl-gym` command line and the studies people run, above the library and the agents.

    marl-gym compare --workload resnet50 --agents egrl,random,greedy,rules,milp     # marl_lab.cli
    from marl_lab.summary import summarise          # EGRL beside the baselines, rules and the optimum
    from marl_lab.reproduction import run_study     # the MARL paper's figures on the analytic model

This is the top layer: it may import `agents` and `marl_gym`; nothing in `marl_gym/`, `agents/` or
`allocator/` imports it. The scripts in examples/ are short walks through these modules.
"""
