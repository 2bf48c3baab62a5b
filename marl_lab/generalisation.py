"""Does EGRL's GNN generalise? Train it with EGRL on some zoo workloads, place unseen ones zero-shot and
after a short fine-tune, against EGRL from scratch with the same short budget.

    from marl_lab.generalisation import markdown, run, settings
    res = run(settings(quick=True), out=Path("runs/gen"))      # also writes actor.pt there
    print(markdown(res))

The node features of a workload graph come from the graph alone and have a fixed width, and the system
vector is appended to every node, so one GNN actor applies to any graph.

* **pre-training = EGRL across the training envs** (`EGRL.fit_many`): a population of GNN actors scored
  by their mean reward over every training workload and task count, plus the SAC learner on a replay
  buffer shared by all of them. Reinforcement learning from rewards only: no optimum is shown.
* **zero-shot:** the pre-trained actor's greedy action on the unseen graph, evaluated once; **zero-shot +
  fit**: the same, keeping only the k most confident 'fast' decisions, k the largest that fits DRAM
  (`PlacementProblem.capacity`: sizes only, no latency of the new workload).
* **fine-tune:** `EGRL(init_actor=...)`: the pre-trained actor in every GNN slot of the population (one
  copy exact, the others mutated), half the Boltzmann chromosomes seeded from its policy, and the SAC
  learner's actor initialised from it; then the usual EGRL loop for the short budget.
* **scratch:** EGRL as usual with the same budget and seed.
* **reference, imitation:** the same actor architecture trained by behaviour cloning of the exact optimum
  (the MILP's placements on the training envs), zero-shot + fit. It bounds what the representation can
  carry over when the labels are perfect; the analytic model can compute them, a real machine cannot.

All numbers are speedups over Memory Mode on the analytic model (docs/model.md), one thread per task.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from marl_lab.reproduction.paper import egrl_config, make_env

SYSTEM = "optane-16g-128g"
THREADS_PER_TASK = 1


def settings(quick: bool, seed: int = 0) -> dict[str, Any]:
    """The study's workloads, task counts and budgets (quick: two workloads each way, tiny budgets)."""
    if quick:
        return dict(
            train=["resnet50", "bert_base"],
            test=["resnet152", "gpt2"],
            train_counts=[32],
            test_counts=[32],
            pretrain_budget=60,
            bc_steps=60,
            budget=24,
            seed=seed,
            quick=True,
        )
    return dict(
        train=["resnet50", "resnet101", "bert_base"],
        test=["resnet152", "wide_resnet50_2", "gpt2"],
        train_counts=[8, 32],
        test_counts=[32],
        pretrain_budget=700,
        bc_steps=300,
        budget=100,
        seed=seed,
        quick=False,
    )


def _env(workload: str, n: int) -> Any:
    return make_env(workload, SYSTEM, n, THREADS_PER_TASK)


def behaviour_clone(cfg: Any, data: list[tuple[Any, np.ndarray]], steps: int, seed: int) -> tuple[Any, list[float]]:
    """The imitation reference: cross-entropy of the actor's (N, 2, 2) logits against optimal placements."""
    import torch
    import torch.nn.functional as F

    from agents.egrl.sac import make_actor

    torch.manual_seed(seed)
    actor = make_actor(data[0][0].in_channels, cfg)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    targets = [(g, torch.as_tensor(a, dtype=torch.long)) for g, a in data]
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.0
        for g, y in targets:
            logits = actor(g.x, g.edge_index)  # (N, 2, 2)
            ce = F.cross_entropy(logits.reshape(-1, 2), y.reshape(-1), reduction="none").view(-1, 2)
            m = g.mask.to(ce.dtype)
            loss = loss + (ce * m).sum() / m.sum()
        loss = loss / len(targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(actor.parameters(), 5.0)
        opt.step()
        losses.append(float(loss))
    return actor, losses


def repaired_greedy(actor: Any, g: Any, problem: Any, candidates: int = 64) -> np.ndarray:
    """The actor's greedy placement made to fit: keep the k most confident 'fast' decisions, with k the
    largest (of `candidates` evenly spaced) that passes the capacity check (sizes only, nothing evaluated)."""
    import torch

    p_fast = torch.softmax(actor.logits(g), -1)[..., 1].numpy() * g.mask_np
    flat = p_fast.ravel()
    order = np.argsort(-flat, kind="stable")
    n_fast = int((flat > 0.5).sum())
    ks = np.unique(np.linspace(0, n_fast, min(candidates, n_fast + 1)).round().astype(int))
    acts = np.zeros((len(ks), flat.size), np.int8)
    for row, k in enumerate(ks):
        acts[row, order[:k]] = 1
    acts = acts.reshape(len(ks), *p_fast.shape)
    ok = [i for i, a in enumerate(acts) if problem.capacity.fits(a)]
    return acts[ok[-1]] if ok else acts[0]


def _optimum(problem: Any) -> tuple[float, np.ndarray]:
    """The MILP optimum's speedup over Memory Mode and its action."""
    from agents.milp import solve_milp

    sol = solve_milp(problem, time_limit_s=60.0)
    latency = float(problem.backend.evaluate(sol.placement).latency_s)
    return problem.baselines_s["memory_mode"] / latency, sol.placement.to_action().astype(np.int64)


def _score(problem: Any, action: np.ndarray) -> tuple[float, bool]:
    rewards, batch = problem.evaluate_batch(np.asarray(action)[None])
    return float(rewards[0]), bool(batch.valid[0])


def _test_row(wl: str, n: int, cfg: Any, s: dict[str, Any], actor: Any, bc_actor: Any) -> dict[str, Any]:
    """One unseen workload: zero-shot (+ fit), fine-tune and scratch EGRL, imitation, optimum, random."""
    from agents.egrl import EGRL, graph_input_from_obs

    env = _env(wl, n)
    problem = env.unwrapped.problem
    g = graph_input_from_obs(env.reset(seed=0)[0])
    opt, _ = _optimum(problem)
    zs, zv = _score(problem, actor.greedy(g))
    t = time.perf_counter()
    agent = EGRL(cfg, seed=s["seed"], progress=False, tensorboard=False, init_actor=actor.state_dict())
    ft = agent.fit(env, budget=s["budget"])
    ft_s = time.perf_counter() - t
    t = time.perf_counter()
    sc = EGRL(cfg, seed=s["seed"], progress=False, tensorboard=False).fit(env, budget=s["budget"])
    sc_s = time.perf_counter() - t
    return dict(
        workload=wl,
        n_tasks=n,
        split="test",
        nodes=problem.num_nodes,
        zero_shot=zs,
        zero_shot_valid=zv,
        repaired=_score(problem, repaired_greedy(actor, g, problem))[0],
        fine_tune=float(ft.best_reward),
        fine_tune_s=ft_s,
        scratch=float(sc.best_reward),
        scratch_s=sc_s,
        bc_repaired=_score(problem, repaired_greedy(bc_actor, g, problem))[0],
        optimum=opt,
        random=problem.baselines_s["memory_mode"] / problem.baselines_s["random"],
        fine_tune_curve=[h[1] for h in ft.history],
        scratch_curve=[h[1] for h in sc.history],
    )


def run(s: dict[str, Any], out: Path | None = None) -> dict[str, Any]:
    """The study with settings `s` (`settings`); with `out`, the pre-trained actor goes to out/actor.pt."""
    import torch

    from agents.egrl import EGRL, graph_input_from_obs

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    cfg = egrl_config(s["quick"])
    train = []
    for wl in s["train"]:
        for n in s["train_counts"]:
            env = _env(wl, n)
            obs, _ = env.reset(seed=0)
            opt, label = _optimum(env.unwrapped.problem)
            train.append(dict(workload=wl, n_tasks=n, env=env, g=graph_input_from_obs(obs), opt=opt, label=label))

    t = time.perf_counter()
    trainer = EGRL(cfg, seed=s["seed"], progress=False, tensorboard=False)
    pre = trainer.fit_many([r["env"] for r in train], budget=s["pretrain_budget"])
    pre_s = time.perf_counter() - t
    actor = trainer.best_actor()
    if out is not None:
        trainer.save_actor(out / "actor.pt")
    t = time.perf_counter()
    bc_actor, losses = behaviour_clone(cfg, [(r["g"], r["label"]) for r in train], s["bc_steps"], s["seed"])
    bc_s = time.perf_counter() - t

    rows = []
    for r, found in zip(train, pre.per_env, strict=True):
        problem, g = r["env"].unwrapped.problem, r["g"]
        zs, zv = _score(problem, actor.greedy(g))
        rows.append(
            dict(
                workload=r["workload"],
                n_tasks=r["n_tasks"],
                split="train",
                zero_shot=zs,
                zero_shot_valid=zv,
                repaired=_score(problem, repaired_greedy(actor, g, problem))[0],
                pretrain_best=float(found.best_reward),
                bc_repaired=_score(problem, repaired_greedy(bc_actor, g, problem))[0],
                optimum=r["opt"],
            )
        )
    rows += [_test_row(wl, n, cfg, s, actor, bc_actor) for wl in s["test"] for n in s["test_counts"]]
    return dict(
        settings=s,
        rows=rows,
        pretrain_s=pre_s,
        pretrain_evaluations=pre.evaluations,
        pretrain_generations=pre.generations,
        pretrain_fitness=pre.best_fitness,
        bc_loss_first=losses[0],
        bc_loss_last=losses[-1],
        bc_s=bc_s,
        wall_s=time.perf_counter() - t0,
    )


def _f(x: float, valid: bool = True) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.3f}" if valid and x > 0 else f"{x:.2f} (invalid)"


def markdown(res: dict[str, Any], heading: str = "#") -> str:
    """The study as markdown: a table of every workload and what it shows."""
    s = res["settings"]
    train_opt = float(np.mean([r["optimum"] for r in res["rows"] if r["split"] == "train"]))
    L = [f"{heading} Generalisation: a GNN trained by EGRL on other workloads\n"]
    L.append(
        f"Pre-trained by EGRL across {', '.join(s['train'])} at {', '.join(map(str, s['train_counts']))} tasks "
        f"(`EGRL.fit_many`: GNN population scored by mean reward over the training envs, SAC "
        f"learner on a shared buffer; {res['pretrain_evaluations']} evaluations in {res['pretrain_generations']} "
        f"generations, {res['pretrain_s']:.0f} s; best mean reward {res['pretrain_fitness']:.3f} against "
        f"{train_opt:.3f} for the optimum of each env); tested on {', '.join(s['test'])} at "
        f"{', '.join(map(str, s['test_counts']))} tasks, `{SYSTEM}`, one thread per task. Cells are speedups over "
        f"Memory Mode (the env's reward; negative = the placement overflows DRAM). Fine-tune (`EGRL(init_actor=...)`) "
        f"and scratch: EGRL with {s['budget']} evaluations, seed {s['seed']}. *Imitation* is the reference "
        f"actor trained by behaviour cloning of the MILP optimum on the same training envs ({s['bc_steps']} Adam "
        f"steps, {res['bc_s']:.0f} s, loss {res['bc_loss_first']:.3f} -> {res['bc_loss_last']:.3f}), zero-shot + fit. "
        f"Standalone: `python examples/generalisation.py{' --quick' if s['quick'] else ''}`.\n"
    )
    hdr = (
        "| workload | tasks | split | zero-shot | zero-shot + fit | fine-tune | scratch | best in pre-training | "
        "imitation, zero-shot + fit | MILP optimum | random |"
    )
    L += [hdr, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        L.append(
            f"| {r['workload']} | {r['n_tasks']} | {r['split']} | {_f(r['zero_shot'], r['zero_shot_valid'])} | "
            f"{_f(r['repaired'])} | {_f(r.get('fine_tune', math.nan))} | {_f(r.get('scratch', math.nan))} | "
            f"{_f(r.get('pretrain_best', math.nan))} | {_f(r['bc_repaired'])} | {r['optimum']:.3f} | "
            f"{_f(r.get('random', math.nan))} |"
        )
    test = [r for r in res["rows"] if r["split"] == "test"]
    if test:

        def gap(key: str) -> float:
            return float(np.mean([r["optimum"] - r[key] for r in test]))

        def hit(r: dict[str, Any], key: str, frac: float) -> str:
            c = np.asarray(r[key])
            idx = np.nonzero(c >= r["optimum"] * frac)[0]
            return str(int(idx[0]) + 1) if len(idx) else f">{len(c)}"

        L.append(
            "\nMean shortfall from the optimum on unseen workloads (speedup points): zero-shot "
            f"{gap('zero_shot'):.3f}, zero-shot + fit {gap('repaired'):.3f}, fine-tune {gap('fine_tune'):.3f}, "
            f"scratch {gap('scratch'):.3f}, imitation reference {gap('bc_repaired'):.3f}. Evaluations to reach 99 % "
            "of the optimum (fine-tune / scratch): "
            + "; ".join(
                f"{r['workload']} {hit(r, 'fine_tune_curve', 0.99)} / {hit(r, 'scratch_curve', 0.99)}" for r in test
            )
            + ".\n"
        )
        invalid = [r["workload"] for r in test if not r["zero_shot_valid"]]
        overflow = (
            f"Here it overflowed on {', '.join(invalid)}. "
            if invalid
            else f"Here every zero-shot placement of the {len(test)} unseen workloads fit. "
        )
        L.append(
            "Reading: zero-shot is one forward pass of the GNN, no evaluation of the new workload. What can transfer "
            "is the rule good placements follow at batch 1 (activations first, then the weights of memory-bound "
            "layers, within the per-task DRAM budget), which the node features (log sizes, arithmetic intensity, "
            "lifetimes, each tensor's share of the DRAM budget) expose. A zero-shot placement can overflow DRAM on a "
            "workload whose sizes differ from the training ones, since the GNN decides per node. "
            + overflow
            + "*zero-shot + fit* keeps the k decisions the GNN is most confident should be fast, with k the largest "
            "that fits DRAM (a capacity check from sizes alone, no latency of the new workload is measured); the "
            "fine-tune instead repairs a placement by search. The imitation column is the same network trained on "
            "perfect labels, which only a model that can be solved exactly provides: the reference for how much of "
            "the transfer the representation allows, against which the RL pre-training is read.\n"
        )
    return "\n".join(L)
