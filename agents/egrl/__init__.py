"""EGRL (Khadka et al., ICLR 2021) as adapted by MARL: GNN actors and Boltzmann chromosomes evolving
together, a discrete SAC learner on a shared replay buffer, and migration of the learner into the
population. Start with `EGRL(EGRLConfig.fast()).fit(env, budget=300)`; train one GNN on several
workloads with `EGRL.fit_many` and start another search from it with `EGRL(init_actor=...)`."""

from agents.egrl.agent import EGRL, MultiWorkloadResult
from agents.egrl.boltzmann import BoltzmannChromosome, crossover_boltzmann
from agents.egrl.config import ABLATIONS, FAST_DEVIATIONS, EGRLConfig
from agents.egrl.evolution import GNNIndividual, crossover_gnn, evolve, migrate, mutate_gnn, tournament
from agents.egrl.gnn import GNNActor, GraphInput, TwinQCritic, graph_input_from_obs
from agents.egrl.pretrained import load_actor, save_actor
from agents.egrl.replay import ReplayBuffer
from agents.egrl.sac import DiscreteSAC

__all__ = [
    "ABLATIONS",
    "EGRL",
    "FAST_DEVIATIONS",
    "BoltzmannChromosome",
    "DiscreteSAC",
    "EGRLConfig",
    "GNNActor",
    "GNNIndividual",
    "GraphInput",
    "MultiWorkloadResult",
    "ReplayBuffer",
    "TwinQCritic",
    "crossover_boltzmann",
    "crossover_gnn",
    "evolve",
    "graph_input_from_obs",
    "load_actor",
    "migrate",
    "mutate_gnn",
    "save_actor",
    "tournament",
]
